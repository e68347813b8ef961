"""The one writer and reader of a trained RAG directory (what ``ragtune train`` writes and ``--model DIR`` reads)::

    DIR/generator/        Generator.save: weights or LoRA adapters + tokenizer + generator.json (only generator.json
                          naming the untouched model when the generator did not train)
    DIR/query_encoder/    retrieval.dense.Encoder.save of the (trained) query encoder, when the retriever is dense
    DIR/dense_index/      optional: the passages' vectors from a trained document encoder (VectorIndex.save)
    DIR/ragtune.json      {"index": "<index dir, absolute or relative to DIR>",
                           "rag": {"mode", "k", "doc_temperature", "retriever"}, "hybrid"?: {...}, "training"?: {...}}
                          ("hybrid": the [hybrid] settings of a rescore retriever, whose score the encoder learned)

Every part is written to a temporary sibling and renamed into place (``ragtune.atomic``), ``ragtune.json`` last,
so a directory with a ``ragtune.json`` is always complete.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ragtune.atomic import atomic_dir, write_json
from ragtune.errors import RagtuneError

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.rag.model import RAG

META_FILE = "ragtune.json"
GENERATOR_DIR = "generator"
QUERY_ENCODER_DIR = "query_encoder"
DENSE_INDEX_DIR = "dense_index"


def is_trained_dir(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / META_FILE).is_file()


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    if not is_trained_dir(model_dir):
        raise RagtuneError(f"{model_dir} is not a trained RAG model (no {META_FILE}); pass the output directory of `ragtune train`")
    return json.loads((Path(model_dir) / META_FILE).read_text())


def index_of(model_dir: str | Path, meta: dict[str, Any]) -> Path:
    """The index directory a trained model names (relative paths are relative to the model directory)."""
    if not meta.get("index"):
        raise RagtuneError(f"{Path(model_dir) / META_FILE} names no index; pass --index DIR")
    index = Path(meta["index"])
    return index if index.is_absolute() else Path(model_dir) / index


def save_trained(rag: "RAG", model_dir: str | Path, *, index_dir: str | Path | None = None, mode: str | None = None,
                 generator_weights: bool = True, dense_index: Any = None, training: dict[str, Any] | None = None) -> Path:
    """Write ``rag`` as a trained directory. ``generator_weights=False`` only names an untouched generator;
    ``dense_index`` (a ``VectorIndex``) holds passages re-encoded by a trained document encoder; ``mode`` is the
    mode the model trained in when it differs from ``rag.mode``; ``training`` is recorded as it is."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with atomic_dir(model_dir / GENERATOR_DIR) as tmp:
        rag.generator.save(tmp, weights=generator_weights)
    dense = dense_part(rag.retriever)
    if dense is not None:
        with atomic_dir(model_dir / QUERY_ENCODER_DIR) as tmp:
            dense.encoder.save(tmp)
    if dense_index is not None:
        with atomic_dir(model_dir / DENSE_INDEX_DIR) as tmp:
            dense_index.save(tmp)
    index = index_dir or getattr(getattr(rag, "index", None), "path", None)
    meta: dict[str, Any] = {
        "index": str(Path(index).resolve()) if index else None,
        "rag": {"mode": mode or rag.mode, "k": rag.k, "doc_temperature": rag.doc_temperature, "retriever": rag.retriever_kind},
    }
    rescoring = _rescoring(rag.retriever)
    if rescoring is not None:  # the encoder learned this f: loading must rank by the same one
        meta["hybrid"] = rescoring.hybrid_settings()
    if training is not None:
        meta["training"] = training
    write_json(model_dir / META_FILE, meta)
    return model_dir


def apply_trained_retriever(retriever: Any, model_dir: str | Path, *, device: str = "cpu") -> Any:
    """Put a trained directory's retriever parts (query encoder, re-encoded passages, a rescoring retriever's
    ``[hybrid]`` settings) into ``retriever`` (dense, or one with a dense part), so search and evaluation use the
    trained retriever; returns it.
    Without re-encoded passages the index's vectors stay: only queries are encoded at search time."""
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    rescoring = _rescoring(retriever)
    if rescoring is not None:
        for name, value in meta.get("hybrid", {}).items():
            setattr(rescoring, name, value)
    parts = [name for name in (QUERY_ENCODER_DIR, DENSE_INDEX_DIR) if (model_dir / name).is_dir()]
    dense = dense_part(retriever)
    if parts and dense is None:
        kind = getattr(retriever, "kind", type(retriever).__name__)
        raise RagtuneError(f"{model_dir} has a trained retriever ({', '.join(parts)}) but retriever {kind!r} is not dense; "
                           "use --retriever dense, rescore or hybrid")
    if QUERY_ENCODER_DIR in parts:
        from ragtune.retrieval.dense import Encoder

        dense.encoder = Encoder.load(model_dir / QUERY_ENCODER_DIR, device=device)
    if DENSE_INDEX_DIR in parts:
        from ragtune.retrieval.dense.vector_index import VectorIndex

        dense.index = VectorIndex.load(model_dir / DENSE_INDEX_DIR)
    return retriever


def dense_part(retriever: Any) -> Any | None:
    """The dense retriever in ``retriever``: itself, or the first dense one it wraps or combines (a sharded sparse
    retriever has an ``encoder`` attribute too, None)."""
    return next((r for r in members(retriever) if getattr(r, "encoder", None) is not None), None)


def _rescoring(retriever: Any) -> Any | None:
    """The rescoring retriever (``retrieval.rescore``) in ``retriever``, whose settings a trained model keeps."""
    return next((r for r in members(retriever) if hasattr(r, "hybrid_settings")), None)


def members(retriever: Any) -> Iterator[Any]:
    """``retriever``, then what it wraps (a reranker's ``base``) and combines (a hybrid's ``retrievers``), depth first."""
    yield retriever
    base = getattr(retriever, "base", None)
    for r in ([base] if base is not None else []) + list(getattr(retriever, "retrievers", [])):
        yield from members(r)
