"""The one-at-a-time server as it was before issue 13 (commit 1fd87e5, ``ragtune/server/app.py``), kept as the
baseline of ``bench_serve.py``: one global lock runs one request at a time; the page route is dropped.

FastAPI app: `/api/search`, `/api/ask`, `/api/health`.

It holds no logic of its own: search goes through ``Index.search``, answers through ``RAG.ask``. The RAG model
loads on the first question, so the page and search are up at once. torch runs one request at a time.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from ragtune.errors import RagtuneError
from ragtune.retrieval.index import Index


class SearchRequest(BaseModel):
    query: str = Field(..., min_length=1)
    k: int = Field(10, ge=1, le=1000)
    retriever: str | None = None


class AskRequest(BaseModel):
    question: str = Field(..., min_length=1)
    mode: Literal["concat", "rag-sequence", "rag-token"] | None = None
    k: int | None = Field(None, ge=1, le=100)


def create_app(index_dir: str | Path, *, rag_factory: Callable[[], Any] | None = None, device: str | None = None) -> FastAPI:
    """An app serving ``index_dir``; ``rag_factory`` builds the RAG model on the first question
    (default: ``RAG.from_index(index_dir)``)."""
    index = Index.open(index_dir)
    lock = threading.Lock()
    state: dict[str, Any] = {}

    def rag() -> Any:
        if "rag" not in state:
            if rag_factory is not None:
                state["rag"] = rag_factory()
            else:
                from ragtune.rag.model import RAG

                state["rag"] = RAG.from_index(index_dir, device=device or "cpu")
        return state["rag"]

    app = FastAPI(title="ragtune", description="Retrieval-augmented generation over one index.")

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "index": str(index.path), "retrievers": index.kinds,
                "passages": index.manifest.get("counts", {}).get("passages")}

    @app.post("/api/search")
    def search(req: SearchRequest) -> dict:
        try:
            with lock:
                rows = index.search([req.query], req.k, req.retriever, device=device)[0]
        except RagtuneError as e:
            raise HTTPException(status_code=400, detail=str(e))
        return {"query": req.query, "hits": [r.to_dict() for r in rows]}

    @app.post("/api/ask")
    def ask(req: AskRequest) -> dict:
        overrides = {k: v for k, v in (("mode", req.mode), ("k", req.k)) if v is not None}
        try:
            with lock:
                out = rag().ask(req.question, **overrides)
        except RagtuneError as e:
            raise HTTPException(status_code=400, detail=str(e))
        return out.to_dict()

    return app
