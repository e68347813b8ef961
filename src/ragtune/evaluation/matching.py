"""Whether a passage answers a question: the one answer-matching rule of training, evaluation and negatives."""
from __future__ import annotations

from typing import Any, Sequence

from ragtune.corpus.squad import QARecord
from ragtune.evaluation.metrics import normalize_answer
from ragtune.retrieval.base import EMPTY_ID, Hits


def recall_hits(hits: Hits, examples: Sequence[QARecord], passages: list[list[Any]], k: int) -> list[float]:
    """Per-question hit@k against the best evidence a row has: positive ids, else positive texts, else answers."""
    out = []
    for row, ex, ps in zip(hits.ids, examples, passages):
        top = [p for i, p in zip(row[:k], ps[:k]) if i != EMPTY_ID and p is not None]
        if ex.positive_ids:
            hit = any(p.id in set(ex.positive_ids) for p in top)
        elif ex.positive_texts:
            pos = [" ".join(t.split()) for t in ex.positive_texts]
            hit = any(" ".join(p.text.split()) in t or t in " ".join(p.text.split()) for p in top for t in pos)
        else:
            golds = [normalize_answer(a) for a in ex.answers]
            hit = any(g and g in normalize_answer(p.text) for p in top for g in golds)
        out.append(float(hit))
    return out
