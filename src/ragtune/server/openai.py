"""OpenAI-compatible routes: ``POST /v1/chat/completions`` (streaming or not) and ``GET /v1/models``.

The last user message is the question, the earlier turns the chat history (``rag.history.split_messages``).
``temperature``, ``top_p``, ``max_tokens`` (or ``max_completion_tokens``) and ``stop`` map onto the generator's
options; ``mode``, ``k`` and ``retriever`` may ride along as extra body fields; other fields are ignored. Each
answer carries the passages in ``references`` (id, doc_id, title, text, prior, posterior; like RAGFlow's
``reference``) and the whole ``RagOutput.to_dict()`` in ``rag``.
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ragtune.config import ServerConfig
from ragtune.errors import RagtuneError
from ragtune.rag.history import split_messages
from ragtune.server.answers import Answers
from ragtune.server.schemas import DecodingFields, Text, check_bounds, error_body, sampling


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = "text"
    text: Text = ""


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: Text | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(DecodingFields):
    model: str | None = None
    messages: list[Message] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=1)


def add_openai_routes(app: FastAPI, answers: Answers, cfg: ServerConfig) -> None:
    holder = answers.holder

    def model_name() -> str:
        return holder.index.config.generator.model

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_name(), "object": "model", "created": 0, "owned_by": "ragtune"}]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request) -> Any:
        max_tokens = req.max_completion_tokens or req.max_tokens
        texts = tuple(m.text() for m in req.messages)
        check_bounds(cfg, k=req.k, max_tokens=max_tokens, texts=texts, turns=len(req.messages))
        try:
            question, history = split_messages([(m.role, m.text()) for m in req.messages])
        except RagtuneError as e:
            raise HTTPException(400, str(e)) from None
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        options = {"mode": req.mode, "k": req.k, "retriever": req.retriever, "max_new_tokens": max_tokens, "stop": stop,
                   **sampling(req.temperature, req.top_p)}
        job = await answers.submit(question, history, options)
        rid = request.scope.get("state", {}).get("request_id", str(job.id))
        base = {"id": f"chatcmpl-{rid}", "created": int(time.time()), "model": req.model or model_name()}
        limit = max_tokens or getattr(getattr(holder.generator, "defaults", None), "max_new_tokens", None)

        def usage() -> dict:
            return {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens,
                    "total_tokens": job.prompt_tokens + job.completion_tokens}

        def finish_reason() -> str:
            return "length" if limit and job.completion_tokens >= limit else "stop"

        def extras(out: Any) -> dict:
            d = out.to_dict()
            return {"references": d["citations"], "rag": d}

        if not req.stream:
            out = await answers.result(job, request)
            return base | {"object": "chat.completion", "usage": usage(), **extras(out),
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": out.answer},
                                        "finish_reason": finish_reason(), "logprobs": None}]}
        first = await answers.first(job, request)

        def chunk(delta: dict, finish: str | None = None, **more: Any) -> str:
            body = base | {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                                           "logprobs": None}], **more}
            return _data(body)

        async def stream() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            async for kind, value in answers.events(job, first):
                if kind == "text":
                    yield chunk({"content": value})
                elif kind == "done":
                    yield chunk({}, finish_reason(), usage=usage(), **extras(value))
                else:
                    yield _data(error_body(value.status_code, str(value.detail)))
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _data(obj: Any) -> str:
    import json

    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
