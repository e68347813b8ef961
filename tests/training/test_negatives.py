"""Hard-negative mining and the false-negative mask of the contrastive objective, on hand-made rows."""
from __future__ import annotations

import pytest

from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.corpus.squad import QARecord
from ragtune.training.negatives import Candidate, false_negatives, hard_negatives, positives


class _Store:
    def __init__(self, passages):
        self.by_id = {p.id: p for p in passages}

    def get(self, ids):
        return [self.by_id.get(i) for i in ids]


P = [Passage(1, "d1", "Paris is the capital of France."), Passage(2, "d2", "Lyon is a city in France."),
     Passage(3, "d3", "The Seine flows through Paris."), Passage(4, "d4", "France borders Spain."),
     Passage(5, "d5", "北京是中国的首都。")]


def test_positives_prefer_ids_then_texts():
    rows = [QARecord("q1", ["Paris"], positive_ids=[1, 3]), QARecord("q2", [], positive_texts=["some text"])]
    assert positives(rows, _Store(P)) == [Candidate(1, P[0].indexed_text), Candidate(None, "some text")]
    with pytest.raises(RagtuneError, match="no positive_ids or positive_texts"):
        positives([QARecord("q3", ["a"])], _Store(P))


def test_hard_negatives_skip_positives_and_answer_bearing_passages():
    row = QARecord("capital of France?", ["Paris"], positive_ids=[1])
    ranked = [[P[0], P[2], None, P[1], P[3], P[1]]]
    # P1 is the positive, P3 mentions Paris (a false negative), None is an empty slot, P2 repeats
    got = hard_negatives([row], ranked, 2)
    assert got == [[Candidate(2, P[1].indexed_text), Candidate(4, P[3].indexed_text)]]
    assert hard_negatives([row], [[P[0], P[2]]], 2) == [[]]  # the ranking ran out


def test_false_negative_mask():
    rows = [QARecord("a", ["Paris"], positive_ids=[1]), QARecord("b", ["Lyon"], positive_ids=[1]),
            QARecord("c", [], positive_texts=["France borders Spain."])]
    cands = [Candidate(1, P[0].indexed_text), Candidate(1, P[0].indexed_text), Candidate(None, "France borders Spain."),
             Candidate(2, P[1].indexed_text)]
    m = false_negatives(rows, cands)
    # a: both copies of passage 1 are its positives; b: passage 1 is its positive too, and Lyon's passage answers it;
    # c: its positive is given as text (whitespace-insensitive)
    assert m.tolist() == [[True, True, False, False], [True, True, False, True], [False, False, True, False]]
