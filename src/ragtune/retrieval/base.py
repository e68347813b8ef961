"""The seam every retriever speaks: a batched ``search`` returning ``Hits``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ragtune.corpus.types import EMPTY_ID, Passage

__all__ = ["EMPTY_ID", "Hits", "PassageLookup", "Retriever", "IndexedRetriever", "cap_k"]


@dataclass
class Hits:
    """Top-k results of a batch of queries.

    ``ids`` (n, k) int64 passage-store ids, ``EMPTY_ID`` where fewer than k passages matched;
    ``scores`` (n, k) float32, descending along each row, ``-inf`` at empty slots;
    ``vectors`` (n, k, d) float32 passage vectors of the hits when a dense retriever was asked for them, so a
    query encoder can be trained through f(q, z) = E(q) . d_z + offset without re-encoding passages;
    ``offsets`` (n, k) float32 the part of each score no encoder computes (a rescoring hybrid's sparse term),
    None for 0.
    """

    ids: np.ndarray
    scores: np.ndarray
    vectors: np.ndarray | None = None
    offsets: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.ids.shape != self.scores.shape or self.ids.ndim != 2:
            raise ValueError(f"Hits ids {self.ids.shape} and scores {self.scores.shape} must both be (n, k)")

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def k(self) -> int:
        return self.ids.shape[1]

    def row(self, i: int) -> list[tuple[int, float]]:
        """The (id, score) pairs of query i, empty slots dropped."""
        return [(int(d), float(s)) for d, s in zip(self.ids[i], self.scores[i]) if d != EMPTY_ID]

    def passages(self, store: "PassageLookup") -> list[list[Passage | None]]:
        """The stored passages of the hits, row by row (None at empty slots), from one ``store.get``."""
        flat = [int(i) for i in self.ids.reshape(-1)]
        real = [i for i in flat if i != EMPTY_ID]
        found = dict(zip(real, store.get(real))) if real else {}
        got = [found.get(i) if i != EMPTY_ID else None for i in flat]
        return [got[r * self.k:(r + 1) * self.k] for r in range(len(self))]

    @classmethod
    def empty(cls, n: int, k: int) -> "Hits":
        return cls(np.full((n, k), EMPTY_ID, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32))


def cap_k(k: int, size: int) -> int:
    """``k`` no larger than the ``size`` passages there are (at least 1): results are (n, k) arrays, so an
    unbounded ``k`` from a user would allocate memory for passages that do not exist."""
    return max(1, min(int(k), int(size)))


class PassageLookup(Protocol):
    def get(self, ids: Sequence[int]) -> list[Passage | None]: ...


@runtime_checkable
class Retriever(Protocol):
    def search(self, queries: Sequence[str], k: int) -> Hits: ...


@runtime_checkable
class IndexedRetriever(Retriever, Protocol):
    """A retriever that owns files in an index directory and follows the passage store incrementally."""

    kind: str  # "bm25", "tfidf", "dense", ...

    def add(self, passages: Sequence[Passage]) -> None: ...

    def delete(self, ids: Sequence[int]) -> None: ...

    def save(self, path: Path) -> None: ...  # writes into directory ``path`` (created by the caller)

    def __len__(self) -> int: ...  # live (not deleted) passages
