"""Whether a passage answers a question: the one answer-matching rule of training, evaluation and negatives."""
from __future__ import annotations

import unicodedata
from typing import Any, Sequence

from ragtune.corpus.squad import QARecord
from ragtune.evaluation.metrics import _ARTICLES, _CJK, _PUNCT
from ragtune.retrieval.base import EMPTY_ID, Hits


def answer_words(text: str) -> str:
    """SQuAD normalisation (NFKC, lowercase, no articles, folded whitespace) with punctuation turned into spaces
    rather than deleted, so words glued by punctuation ("principle.[citation", "1249–1314", "Ungar's") stay apart."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = "".join(" " if ch in _PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in s)
    return " ".join(_ARTICLES.sub(" ", s).split())


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """Whether an answer occurs in the text as whole words (``answer_words`` on both sides: "Paris" is not in
    "Parisian"), or as characters for CJK, which has no word boundaries."""
    return contains_answer_words(answer_words(text), answers)


def contains_answer_words(words: str, answers: Sequence[str]) -> bool:
    """``contains_answer`` for a text already through ``answer_words`` (to do that once per candidate, not once per
    question)."""
    for a in answers:
        g = answer_words(a)
        if g and (g in words if _CJK.search(g) else f" {g} " in f" {words} "):
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
