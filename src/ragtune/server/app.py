"""FastAPI app over one index: native routes, OpenAI-compatible routes (``server/openai.py``) and the web page.

It holds no logic of its own: search goes through ``Index.search``, answers through ``RAG.ask_batch`` in
micro-batches (``server/batching.py``). Searches run on the thread pool, concurrently with each other and with
the generation worker; nothing holds a global lock.

    GET  /health            alive (never needs the API key)
    GET  /ready             200 once the models are loaded, else 503 (``--preload`` loads them at start)
    GET  /metrics           Prometheus text format
    GET  /api/health        index facts: passages, retrievers, model, readiness
    POST /api/search        {"query", "k", "retriever"} -> {"query", "hits": [...]}
    POST /api/ask           {"question", "history", "mode", "k", "retriever", decoding options, "stream"}
                            -> RagOutput.to_dict(), or server-sent events: token ... then done (the RagOutput)
    POST /v1/chat/completions, GET /v1/models   (see server/openai.py)
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from ragtune.config import ServerConfig
from ragtune.server.answers import Answers
from ragtune.server.holder import ModelHolder
from ragtune.server.middleware import Metrics, ServerMiddleware
from ragtune.server.schemas import AskRequest, SearchRequest, check_bounds, error_body, install_error_handlers, sampling

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("ragtune.server")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(index_dir: str | Path, *, rag_factory: Callable[..., Any] | None = None, device: str | None = None,
               config: ServerConfig | None = None, api_key: str | None = None, backend: str | None = None,
               dtype: str | None = None) -> FastAPI:
    """An app serving ``index_dir``. ``rag_factory(retriever, generator)`` builds a RAG (default
    ``RAG.from_index``); ``config`` is the ``[server]`` section (default: the index's own)."""
    holder = ModelHolder(index_dir, device=device, rag_factory=rag_factory, backend=backend, dtype=dtype)
    cfg = config or holder.index.config.server
    metrics = Metrics()
    answers = Answers(holder, cfg, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        preload = asyncio.get_running_loop().run_in_executor(None, holder.rag) if cfg.preload else None
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, cfg.switch_interval_ms / 1000))  # see ServerConfig.switch_interval_ms
        try:
            yield
        finally:
            sys.setswitchinterval(switch)
            if preload is not None and not preload.done():
                preload.cancel()
            await answers.batcher.close()

    app = FastAPI(title="ragtune", description="Retrieval-augmented generation over one index.", lifespan=lifespan)
    app.state.holder, app.state.answers, app.state.metrics, app.state.config = holder, answers, metrics, cfg
    app.add_middleware(ServerMiddleware, api_key=api_key, max_body_bytes=cfg.max_body_bytes, metrics=metrics)
    install_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    @app.get("/favicon.svg", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        if holder.loaded:
            return JSONResponse({"status": "ready"})
        return JSONResponse(error_body(503, "models not loaded yet") | {"status": "loading"}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/api/health")
    def info() -> dict:
        holder.refresh()
        index = holder.index
        return {"status": "ok", "ready": holder.loaded, "index": str(index.path), "retrievers": index.kinds,
                "passages": index.manifest.get("counts", {}).get("passages"), "model": index.config.generator.model,
                "reloads": holder.reloads}

    @app.post("/api/search")
    def search(req: SearchRequest) -> dict:
        check_bounds(cfg, k=req.k, texts=(req.query,))
        holder.refresh()
        rows = holder.index.search([req.query], req.k, req.retriever, device=device)[0]
        return {"query": req.query, "hits": [r.to_dict() for r in rows]}

    @app.post("/api/ask")
    async def ask(req: AskRequest, request: Request) -> Any:
        check_bounds(cfg, k=req.k, max_tokens=req.max_new_tokens, texts=(req.question, *[t for turn in req.history for t in turn]),
                     turns=len(req.history))
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        options = {"mode": req.mode, "k": req.k, "retriever": req.retriever, "max_new_tokens": req.max_new_tokens, "stop": stop,
                   **sampling(req.temperature, req.top_p)}
        if req.decoding:
            options["decoding"] = req.decoding
        job = await answers.submit(req.question, list(req.history), options)
        if not req.stream:
            return (await answers.result(job, request)).to_dict()
        first = await answers.first(job, request)

        async def stream() -> AsyncIterator[str]:
            async for kind, value in answers.events(job, first):
                if kind == "text":
                    yield sse({"text": value}, "token")
                elif kind == "done":
                    yield sse(value.to_dict(), "done")
                else:
                    yield sse(error_body(value.status_code, str(value.detail)), "error")

        return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)

    from ragtune.server.openai import add_openai_routes

    add_openai_routes(app, answers, cfg)
    return app
