"""Micro-batching of answer requests: concurrent questions are queued and decoded together by ``RAG.ask_batch``.

The policy is two pure functions (``next_batch``, ``wait_left``), tested on their own; ``MicroBatcher`` runs
them on the event loop and hands each batch to one worker thread (torch decodes one batch at a time). Each
``Job`` receives its events on an ``asyncio.Queue``: ``("text", str)`` as the answer is decoded, then
``("done", RagOutput)`` or ``("error", Exception)``. A job whose client left or whose time ran out is dropped
from the queue, or stopped mid-batch through the ``TokenSink`` that the generator consults every step.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

# ---- policy (pure) ------------------------------------------------------------------------------------------


def next_batch(keys: Sequence[Hashable], max_batch: int) -> list[int]:
    """Positions of the next batch in a queue of batch keys (oldest first): the oldest job and the jobs after it
    that share its key (same mode, k, retriever and decoding options), at most ``max_batch``, in arrival order."""
    if not keys:
        return []
    first = keys[0]
    return [i for i, k in enumerate(keys) if k == first][:max_batch]


def wait_left(keys: Sequence[Hashable], oldest_age_s: float, max_batch: int, max_wait_s: float) -> float:
    """Seconds to keep waiting for company before running the next batch: 0 when it is full or the oldest job
    has waited ``max_wait_s``."""
    if not keys:
        return float("inf")
    if len(next_batch(keys, max_batch)) >= max_batch:
        return 0.0
    return max(0.0, max_wait_s - oldest_age_s)


def batch_key(options: dict[str, Any]) -> tuple:
    """Requests with equal keys can share one ``ask_batch`` call."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items() if v is not None))


# ---- runtime ------------------------------------------------------------------------------------------------


class QueueFull(Exception):
    """The bounded queue has no room: the caller answers 429."""


@dataclass
class Job:
    question: str
    history: tuple
    options: dict[str, Any]  # mode, k, retriever and decoding options of ask_batch
    deadline: float  # time.monotonic() after which the job is abandoned
    id: int = field(default_factory=itertools.count().__next__)
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def key(self) -> tuple:
        return batch_key(self.options)

    def expired(self) -> bool:
        return self.cancelled or time.monotonic() > self.deadline


class _Sink:
    """The ``TokenSink`` of one batch: routes each row's text to its job's queue (thread-safe)."""

    def __init__(self, jobs: Sequence[Job], loop: asyncio.AbstractEventLoop):
        self.jobs, self.loop = jobs, loop

    def put(self, row: int, text: str) -> None:
        self.loop.call_soon_threadsafe(self.jobs[row].events.put_nowait, ("text", text))

    def stopped(self, row: int) -> bool:
        return self.jobs[row].expired()

    def usage(self, row: int, prompt_tokens: int, completion_tokens: int) -> None:
        self.jobs[row].prompt_tokens, self.jobs[row].completion_tokens = prompt_tokens, completion_tokens


def _lower_priority(nice: int) -> None:
    """Run this thread (and the torch threads it starts) ``nice`` steps nicer, so searches get the CPU first (Linux)."""
    if nice > 0 and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError:
            pass


class MicroBatcher:
    """Queues jobs and runs them in micro-batches through ``run_batch(jobs, sink) -> list[RagOutput]``
    on one worker thread. ``on_batch(size)`` is told each batch's size (metrics)."""

    def __init__(self, run_batch: Callable[[list[Job], Any], list[Any]], *, max_batch: int, max_wait_ms: float, queue_size: int,
                 on_batch: Callable[[int], None] = lambda n: None, worker_nice: int = 0):
        self.run_batch, self.on_batch = run_batch, on_batch
        self.max_batch, self.max_wait_s, self.queue_size = max_batch, max_wait_ms / 1000.0, queue_size
        self.pending: list[Job] = []
        self.running = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragtune-generate", initializer=_lower_priority,
                                        initargs=(worker_nice,))

    @property
    def depth(self) -> int:
        """Jobs waiting or running."""
        return len(self.pending) + self.running

    def submit(self, job: Job) -> Job:
        if self.depth >= self.queue_size:
            raise QueueFull(f"{self.depth} answer requests queued (the limit is {self.queue_size})")
        self._ensure_started()
        self.pending.append(job)
        assert self._wake is not None
        self._wake.set()
        return job

    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self.pending = [j for j in self.pending if not j.expired()]
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            keys = [j.key for j in self.pending]
            left = wait_left(keys, time.monotonic() - self.pending[0].enqueued, self.max_batch, self.max_wait_s)
            if left > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=left)
                except asyncio.TimeoutError:
                    pass
                continue
            picked = set(next_batch(keys, self.max_batch))
            batch = [j for i, j in enumerate(self.pending) if i in picked]
            self.pending = [j for i, j in enumerate(self.pending) if i not in picked]
            self.running = len(batch)
            self.on_batch(len(batch))
            try:
                outs = await loop.run_in_executor(self._pool, self.run_batch, batch, _Sink(batch, loop))
            except Exception as e:  # noqa: BLE001 - every job of the batch hears the error
                for j in batch:
                    j.events.put_nowait(("error", e))
            else:
                for j, out in zip(batch, outs):
                    j.events.put_nowait(("done", out))
            finally:
                self.running = 0
