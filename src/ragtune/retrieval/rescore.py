"""A sparse retriever's candidates re-ranked by a score the query encoder computes part of (retriever kind ``rescore``).

f(q, z) = E(q) . d_z + w * s_sparse(q, z) over the sparse retriever's top ``depth``: the linear dense-sparse
hybrid of Ma et al. (2021, "A Replication Study of Dense Passage Retriever"), restricted to the sparse candidates
so that each needs only its stored vector. f is linear in E(q), so RAG trains the query encoder through this prior
as through a dense retriever's: ``Hits.vectors`` are the candidates' d_z and ``Hits.offsets`` the fixed w * s term.
Unlike rank fusion (``hybrid.rrf``), the encoder's scores move the ranking and the prior continuously.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ragtune.errors import RagtuneError
from ragtune.retrieval.base import EMPTY_ID, Hits, Retriever, cap_k


def rescore(first: Hits, qvecs: np.ndarray, vectors: np.ndarray, k: int, sparse_weight: float) -> Hits:
    """The top ``k`` of ``first``'s hits by E(q) . d + sparse_weight * s (ties kept in ``first``'s order).

    ``qvecs`` (n, d) query vectors, ``vectors`` (n, depth, d) the vectors of ``first``'s hits. The returned hits
    carry ``vectors`` and ``offsets`` (the sparse term), so ``scores == offsets + E(q) . vectors``.
    """
    valid = first.ids != EMPTY_ID
    offsets = (sparse_weight * np.where(valid, first.scores, 0.0)).astype(np.float32)  # 0, not w * -inf, when empty
    f = np.where(valid, offsets + np.einsum("nd,nkd->nk", qvecs, vectors), -np.inf).astype(np.float32)
    order = np.argsort(-f, axis=1, kind="stable")[:, :cap_k(k, first.k)]

    def take(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, order, axis=1)

    return Hits(take(first.ids), take(f), np.take_along_axis(vectors, order[..., None], axis=1), take(offsets))


class RescoringRetriever:
    """``retrievers[0]`` (sparse) proposes ``depth`` candidates; ``retrievers[1]`` (dense: an ``encoder`` and
    ``passage_vectors``) scores them; ``search`` returns the top k by ``rescore``."""

    kind = "rescore"

    def __init__(self, retrievers: Sequence[Retriever], sparse_weight: float = 0.1, depth: int = 100) -> None:
        if len(retrievers) != 2 or getattr(retrievers[1], "encoder", None) is None:
            names = ", ".join(getattr(r, "kind", type(r).__name__) for r in retrievers)
            raise RagtuneError(f"the rescore retriever takes two retrievers, the first proposing candidates and the "
                               f"second dense (e.g. hybrid.retrievers = ['bm25', 'dense']); got {names}")
        self.retrievers = list(retrievers)
        self.sparse_weight = float(sparse_weight)
        self.depth = depth

    def hybrid_settings(self) -> dict[str, float | int]:
        """What ``[hybrid]`` set here: a trained model records it, so loading it ranks by the same f."""
        return {"sparse_weight": self.sparse_weight, "depth": self.depth}

    def search(self, queries: Sequence[str], k: int, *, return_vectors: bool = False) -> Hits:
        if isinstance(queries, str):
            raise TypeError("search takes a sequence of queries; wrap a single query in a list")
        first, dense = self.retrievers
        queries = list(queries)
        cand = first.search(queries, max(self.depth, k))
        qvecs = dense.encoder.encode_queries(queries)
        hits = rescore(cand, qvecs, dense.passage_vectors(cand.ids), k, self.sparse_weight)
        if not return_vectors:
            hits.vectors = None
        return hits

    def __repr__(self) -> str:
        return f"RescoringRetriever({self.retrievers!r}, sparse_weight={self.sparse_weight}, depth={self.depth})"

