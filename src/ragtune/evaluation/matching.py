"""Whether a passage answers a question: the one answer-matching rule of training, evaluation and negatives."""
from __future__ import annotations

from typing import Any, Sequence

from ragtune.corpus.squad import QARecord
from ragtune.evaluation.metrics import _CJK, normalize_answer
from ragtune.retrieval.base import EMPTY_ID, Hits


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """Whether a SQuAD-normalised answer occurs in the normalised text: as whole words, or as characters for CJK
    (which has no word boundaries)."""
    return contains_normalized(normalize_answer(text), answers)


def contains_normalized(normalized_text: str, answers: Sequence[str]) -> bool:
    """``contains_answer`` for a text already normalised (to normalise each candidate once, not once per question)."""
    t = normalized_text
    for a in answers:
        g = normalize_answer(a)
        if g and (g in t if _CJK.search(g) else f" {g} " in f" {t} "):
            return True
    return False


def recall_hits(hits: Hits, examples: Sequence[QARecord], passages: list[list[Any]], k: int) -> list[float]:
    """Per-question hit@k against the best evidence a row has: positive ids, else positive texts (overlapping
    the passage either way, since chunking may split or join them), else answers (``contains_answer``)."""
    out = []
    for row, ex, ps in zip(hits.ids, examples, passages):
        top = [p for i, p in zip(row[:k], ps[:k]) if i != EMPTY_ID and p is not None]
        if ex.positive_ids:
            hit = any(p.id in set(ex.positive_ids) for p in top)
        elif ex.positive_texts:
            pos = [" ".join(t.split()) for t in ex.positive_texts]
            hit = any(" ".join(p.text.split()) in t or t in " ".join(p.text.split()) for p in top for t in pos)
        else:
            hit = any(contains_answer(p.text, ex.answers) for p in top)
        out.append(float(hit))
    return out
