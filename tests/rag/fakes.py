"""An in-memory retriever and store, so RAG tests need no index on disk."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ragtune.corpus.types import Passage
from ragtune.retrieval.base import EMPTY_ID, Hits

PASSAGES = [
    Passage(1, "eiffel", "The Eiffel Tower was completed in 1889.", "Eiffel Tower"),
    Passage(2, "broncos", "Denver Broncos won Super Bowl 50 in Santa Clara.", "Super Bowl 50"),
    Passage(3, "everest", "Mount Everest is the highest mountain on Earth.", "Mount Everest"),
]


class DictStore:
    def __init__(self, passages: Sequence[Passage] = PASSAGES):
        self.by_id = {p.id: p for p in passages}

    def get(self, ids: Sequence[int]) -> list[Passage | None]:
        return [self.by_id.get(int(i)) for i in ids]


class FakeRetriever:
    """Scores = word overlap + a per-passage offset, so every passage gets a distinct, known score."""

    kind = "fake"

    def __init__(self, passages: Sequence[Passage] = PASSAGES):
        self.passages = list(passages)
        self.queries: list[str] = []

    def search(self, queries: Sequence[str], k: int) -> Hits:
        self.queries.extend(queries)
        ids = np.full((len(queries), k), EMPTY_ID, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for r, q in enumerate(queries):
            words = set(q.lower().split())
            scored = sorted(((len(words & set(p.indexed_text.lower().split())) + 0.1 * (len(self.passages) - j), p.id)
                             for j, p in enumerate(self.passages)), reverse=True)[:k]
            for c, (s, pid) in enumerate(scored):
                ids[r, c], scores[r, c] = pid, s
        return Hits(ids, scores)
