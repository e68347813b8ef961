"""Positives, BM25 hard negatives and false-negative masks for the contrastive (DPR) objective.

DPR's best negatives are BM25's top passages that do not contain the answer: they share the question's words,
so the encoder has to learn more than term overlap. A candidate that also answers a question (its own passage
again, or another question's positive: SQuAD asks about five questions per paragraph, so in-batch duplicates
are common) is not a negative of that question; it is masked rather than pushed away.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ragtune.errors import RagtuneError
from ragtune.corpus.squad import QARecord
from ragtune.evaluation.matching import answer_words, contains_answer, contains_answer_words


@dataclass(frozen=True)
class Candidate:
    """A passage the contrastive loss scores: a store id (vector from the index) or, for a positive given only
    as text, ``id=None``."""

    id: int | None
    text: str


def positives(examples: Sequence[QARecord], store: Any) -> list[Candidate]:
    """Each question's first positive passage: its first ``positive_ids`` entry (text from the store), else its
    first ``positive_texts`` entry."""
    ids = [e.positive_ids[0] for e in examples if e.positive_ids]
    found = dict(zip(ids, store.get(ids))) if ids else {}
    out = []
    for e in examples:
        if e.positive_ids:
            p = found.get(e.positive_ids[0])
            out.append(Candidate(int(e.positive_ids[0]), p.indexed_text if p is not None else ""))
        elif e.positive_texts:
            out.append(Candidate(None, e.positive_texts[0]))
        else:
            raise RagtuneError(f"question {e.question!r} has no positive_ids or positive_texts; the contrastive objective needs one")
    return out


def is_positive(c: Candidate, e: QARecord) -> bool:
    return _is_positive(c.id, " ".join(c.text.split()), e)


def _is_positive(cid: int | None, spaced_text: str, e: QARecord) -> bool:
    if cid is not None and cid in e.positive_ids:
        return True
    return any(spaced_text == " ".join(t.split()) for t in e.positive_texts)


def hard_negatives(examples: Sequence[QARecord], ranked: Sequence[Sequence[Any]], n: int) -> list[list[Candidate]]:
    """The first ``n`` passages of each question's ranking (e.g. BM25's) that are neither a positive nor contain
    one of its answers. A question whose ranking runs out gets fewer."""
    out = []
    for e, row in zip(examples, ranked):
        picked: list[Candidate] = []
        for p in row:
            if len(picked) == n:
                break
            if p is None:
                continue
            c = Candidate(int(p.id), p.indexed_text)
            if not is_positive(c, e) and not contains_answer(c.text, e.answers) and c not in picked:
                picked.append(c)
        out.append(picked)
    return out


def false_negatives(examples: Sequence[QARecord], candidates: Sequence[Candidate]) -> np.ndarray:
    """(B, C) True where candidate c is a positive of question b or contains one of its answers."""
    # each candidate text is normalised once, not once per question (B x C pairs a step)
    spaced = [" ".join(c.text.split()) for c in candidates]
    normalized = [answer_words(c.text) for c in candidates]
    mask = np.zeros((len(examples), len(candidates)), dtype=bool)
    for b, e in enumerate(examples):
        for j, c in enumerate(candidates):
            mask[b, j] = _is_positive(c.id, spaced[j], e) or contains_answer_words(normalized[j], e.answers)
    return mask
