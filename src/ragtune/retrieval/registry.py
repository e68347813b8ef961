"""Retriever kinds by name: how to make an empty one from the config and how to load a saved one."""
from __future__ import annotations

from pathlib import Path

from ragtune.config import Config
from ragtune.errors import RagtuneError
from ragtune.retrieval.base import IndexedRetriever, Retriever

INDEXED_KINDS = ("bm25", "tfidf", "dense")
ALL_KINDS = INDEXED_KINDS + ("hybrid", "rescore")
FUSED_KINDS = ("hybrid", "rescore")  # query-time combinations of the indexed kinds in ``[hybrid] retrievers``


def _check(kind: str) -> None:
    if kind not in INDEXED_KINDS:
        raise RagtuneError(f"unknown retriever {kind!r}: choose one of {', '.join(ALL_KINDS)}")


def create(kind: str, config: Config) -> IndexedRetriever:
    """An empty retriever of ``kind`` configured by ``config``; heavy modules load only here."""
    _check(kind)
    if kind == "bm25":
        from ragtune.retrieval.sparse import BM25Retriever

        return BM25Retriever(config.sparse, config.analyzer)
    if kind == "tfidf":
        from ragtune.retrieval.sparse import TfidfRetriever

        return TfidfRetriever(config.sparse, config.analyzer)
    from ragtune.retrieval.dense import DenseRetriever

    return DenseRetriever(config.dense)


def load(kind: str, path: Path, *, device: str | None = None) -> IndexedRetriever:
    _check(kind)
    if kind in ("bm25", "tfidf"):
        from ragtune.retrieval import sparse

        cls = sparse.BM25Retriever if kind == "bm25" else sparse.TfidfRetriever
        return cls.load(path)
    from ragtune.retrieval.dense import DenseRetriever

    return DenseRetriever.load(path, device=device) if device else DenseRetriever.load(path)


def expand(kinds: list[str], config: Config) -> list[str]:
    """The indexed kinds a request needs: ``hybrid`` and ``rescore`` stand for the retrievers they combine."""
    out: list[str] = []
    for kind in kinds:
        parts = config.hybrid.retrievers if kind in FUSED_KINDS else [kind]
        for p in parts:
            _check(p)
            if p not in out:
                out.append(p)
    return out


def fused(kind: str, retrievers: list[Retriever], config: Config) -> Retriever:
    """``hybrid`` (rank or score fusion) or ``rescore`` (the first's candidates re-ranked with the second's dense
    score) of ``retrievers``, as ``config.hybrid`` describes."""
    h = config.hybrid
    if kind not in FUSED_KINDS:
        raise RagtuneError(f"{kind!r} is not a combination of retrievers: choose one of {', '.join(FUSED_KINDS)}")
    if kind == "rescore":
        from ragtune.retrieval.rescore import RescoringRetriever

        return RescoringRetriever(retrievers, sparse_weight=h.sparse_weight, depth=h.depth)
    from ragtune.retrieval.hybrid import HybridRetriever

    return HybridRetriever(retrievers, method=h.method, rrf_k=h.rrf_k, weights=h.weights, depth=h.depth)
