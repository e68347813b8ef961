"""Fusing the rankings of several retrievers: reciprocal rank fusion or weighted min-max-normalised scores.

The fusion functions are pure (``Hits`` in, ``Hits`` out), so they are tested on hand-made rankings;
``HybridRetriever`` only runs the retrievers and calls one of them.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Literal, Sequence

import numpy as np

from ragtune.retrieval.base import EMPTY_ID, Hits, Retriever, cap_k

FusionMethod = Literal["rrf", "weighted"]


def _weights(n: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} retrievers")
    return [float(w) for w in weights]


def _top_k(fused: list[dict[int, float]], k: int) -> Hits:
    out = Hits.empty(len(fused), k)
    for q, scores in enumerate(fused):
        # ties broken by id so that fusion is deterministic whatever the dict order
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        for j, (pid, s) in enumerate(best):
            out.ids[q, j], out.scores[q, j] = pid, s
    return out


def _check(runs: Sequence[Hits]) -> int:
    if not runs:
        raise ValueError("nothing to fuse")
    n = len(runs[0])
    if any(len(h) != n for h in runs):
        raise ValueError("all runs must cover the same queries")
    return n


def rrf(runs: Sequence[Hits], k: int, *, rrf_k: int = 60, weights: Sequence[float] | None = None) -> Hits:
    """Reciprocal rank fusion (Cormack et al., 2009): score(d) = sum_r w_r / (rrf_k + rank_r(d)), ranks from 1.

    Only ranks matter, so retrievers with incomparable score scales fuse without calibration.
    """
    n, w = _check(runs), _weights(len(runs), weights)
    fused: list[dict[int, float]] = [defaultdict(float) for _ in range(n)]
    for run, wr in zip(runs, w):
        for q in range(n):
            for rank, pid in enumerate(run.ids[q], start=1):
                if pid != EMPTY_ID:
                    fused[q][int(pid)] += wr / (rrf_k + rank)
    return _top_k(fused, k)


def minmax(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row min-max normalisation over the valid slots to [0, 1]; a row of equal scores maps to 1."""
    s = np.where(valid, scores, np.nan).astype(np.float64)
    with np.errstate(all="ignore"):
        lo, hi = np.nanmin(s, axis=1, keepdims=True), np.nanmax(s, axis=1, keepdims=True)
        span = hi - lo
        norm = np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(valid, norm, 0.0)


def weighted_fusion(runs: Sequence[Hits], k: int, *, weights: Sequence[float] | None = None) -> Hits:
    """score(d) = sum_r w_r * minmax_r(d), a passage missing from a run contributing 0 for it.

    Normalisation is over each run's returned hits per query, as in Pyserini/Vespa-style linear fusion.
    """
    n, w = _check(runs), _weights(len(runs), weights)
    fused: list[dict[int, float]] = [defaultdict(float) for _ in range(n)]
    for run, wr in zip(runs, w):
        norm = minmax(run.scores, run.ids != EMPTY_ID)
        for q in range(n):
            for pid, s in zip(run.ids[q], norm[q]):
                if pid != EMPTY_ID:
                    fused[q][int(pid)] += wr * float(s)
    return _top_k(fused, k)


class HybridRetriever:
    """Any retrievers, fused: ``search`` asks each for ``depth`` hits and returns the fused top k."""

    kind = "hybrid"

    def __init__(
        self,
        retrievers: list[Retriever],
        method: FusionMethod = "rrf",
        rrf_k: int = 60,
        weights: Sequence[float] | None = None,
        depth: int = 100,
    ) -> None:
        if method not in ("rrf", "weighted"):
            raise ValueError(f"unknown fusion method {method!r}; use 'rrf' or 'weighted'")
        self.retrievers = list(retrievers)
        self.method = method
        self.rrf_k = rrf_k
        self.weights = None if weights is None else _weights(len(self.retrievers), weights)
        self.depth = depth

    def fuse(self, runs: Sequence[Hits], k: int) -> Hits:
        k = cap_k(k, sum(run.k for run in runs))  # the fused list holds at most the union of the runs
        if self.method == "rrf":
            return rrf(runs, k, rrf_k=self.rrf_k, weights=self.weights)
        return weighted_fusion(runs, k, weights=self.weights)

    def search(self, queries: Sequence[str], k: int) -> Hits:
        depth = max(self.depth, k)
        return self.fuse([r.search(queries, depth) for r in self.retrievers], k)

    def __repr__(self) -> str:
        return f"HybridRetriever({self.retrievers!r}, method={self.method!r}, rrf_k={self.rrf_k}, weights={self.weights}, depth={self.depth})"
