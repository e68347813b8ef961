"""Answer requests end to end: queue a job, wait for its events, turn them into a reply or a stream.

Both the native ``/api/ask`` and ``/v1/chat/completions`` go through ``Answers``: it owns the micro-batcher and
runs each batch through ``RAG.ask_batch`` (one RAG per retriever kind, from ``ModelHolder``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from ragtune.config import ServerConfig
from ragtune.server.batching import Job, MicroBatcher, QueueFull
from ragtune.server.holder import ModelHolder
from ragtune.server.middleware import Metrics
from ragtune.server.schemas import status_of

log = logging.getLogger("ragtune.server")
_POLL_S = 0.25  # how often a waiting request checks that its client is still there


class Answers:
    def __init__(self, holder: ModelHolder, cfg: ServerConfig, metrics: Metrics):
        self.holder, self.cfg, self.metrics = holder, cfg, metrics
        self.batcher = MicroBatcher(self._run, max_batch=cfg.max_batch_size, max_wait_ms=cfg.max_wait_ms, queue_size=cfg.queue_size,
                                    on_batch=metrics.batch_size.observe, worker_nice=cfg.worker_nice)
        metrics.queue_depth.set_function(lambda: self.batcher.depth)

    def _run(self, jobs: list[Job], sink: Any) -> list[Any]:
        """One micro-batch on the worker thread; every job shares the options (``batch_key``)."""
        opts = dict(jobs[0].options)
        rag = self.holder.rag(opts.pop("retriever", None))
        outs = rag.ask_batch([j.question for j in jobs], histories=[j.history for j in jobs], sink=sink, **opts)
        for j, out in zip(jobs, outs):
            if not j.completion_tokens:  # not decoded through the sink (rag-sequence, rag-token, beam search)
                j.completion_tokens = self.holder.count_tokens(out.answer)
            if not j.prompt_tokens:
                j.prompt_tokens = out.usage.get("prompt_tokens", 0)
            self.metrics.generated_tokens.inc(j.completion_tokens)
            self.metrics.prompt_tokens.inc(j.prompt_tokens)
        return outs

    async def submit(self, question: str, history: list[tuple[str, str]], options: dict[str, Any]) -> Job:
        await run_in_threadpool(self.holder.refresh)  # a reopened index may be verified: not on the event loop
        job = Job(question, tuple(history), {k: v for k, v in options.items() if v is not None},
                  deadline=time.monotonic() + self.cfg.timeout_s)
        try:
            return self.batcher.submit(job)
        except QueueFull as e:
            raise HTTPException(429, f"server busy: {e}; retry shortly", headers={"Retry-After": "1"}) from None

    async def next_event(self, job: Job, request: Request | None) -> tuple[str, Any]:
        """The job's next event; raises 504 past its deadline, and cancels it when the client has gone."""
        while True:
            left = job.deadline - time.monotonic()
            if left <= 0:
                job.cancelled = True
                raise HTTPException(504, f"no answer within {self.cfg.timeout_s:g} s")
            try:
                return await asyncio.wait_for(job.events.get(), timeout=min(_POLL_S, left))
            except asyncio.TimeoutError:
                if request is not None and await request.is_disconnected():
                    job.cancelled = True
                    raise HTTPException(499, "client closed the request") from None

    async def result(self, job: Job, request: Request | None) -> Any:
        """The finished ``RagOutput`` (text events are skipped)."""
        while True:
            kind, value = await self.next_event(job, request)
            if kind == "done":
                return value
            if kind == "error":
                raise self.http_error(value)

    async def first(self, job: Job, request: Request | None) -> tuple[str, Any]:
        """The first event, before a stream's headers go out, so a failure is still an honest 4xx/5xx."""
        kind, value = await self.next_event(job, request)
        if kind == "error":
            raise self.http_error(value)
        return kind, value

    async def events(self, job: Job, first: tuple[str, Any]) -> AsyncIterator[tuple[str, Any]]:
        """``("text", piece)`` events whose pieces concatenate to the answer, then ``("done", RagOutput)``, or one
        ``("error", HTTPException)``. Closing the iterator (client gone) cancels the job."""
        sent = ""
        event = first
        try:
            while True:
                kind, value = event
                if kind == "text":
                    piece = value if sent else value.lstrip()
                    if piece:
                        sent += piece
                        yield "text", piece
                elif kind == "done":
                    if value.answer.startswith(sent) and len(value.answer) > len(sent):  # undecoded modes, or a trimmed tail
                        yield "text", value.answer[len(sent):]
                    yield "done", value
                    return
                else:
                    yield "error", self.http_error(value)
                    return
                try:
                    event = await self.next_event(job, None)
                except HTTPException as e:
                    yield "error", e
                    return
        finally:
            job.cancelled = True

    def http_error(self, e: BaseException) -> HTTPException:
        if isinstance(e, HTTPException):
            return e
        status = status_of(e)
        if status >= 500:
            log.error("answering failed", exc_info=e)
            return HTTPException(500, "internal error while answering")
        return HTTPException(status, str(e))
