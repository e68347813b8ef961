"""The one answer-matching rule and Recall@k over hits."""
from __future__ import annotations

import numpy as np

from ragtune.corpus.squad import QARecord
from ragtune.corpus.types import Passage
from ragtune.evaluation.matching import contains_answer, recall_hits
from ragtune.retrieval.base import EMPTY_ID, Hits


def test_contains_answer_whole_words_and_cjk():
    assert contains_answer("Paris is the capital of France.", ["paris"])
    assert not contains_answer("Parisian cafés", ["Paris"])  # words, not substrings
    assert contains_answer("The capital is Paris!", ["the  capital"])  # normalised like EM
    assert contains_answer("北京是中国的首都。", ["中国"])  # CJK: characters
    assert not contains_answer("anything", [""])
    # punctuation separates words instead of vanishing: answers glued to brackets, dashes or possessives still match
    assert contains_answer("the Pauli exclusion principle.[citation needed]", ["Pauli exclusion principle"])
    assert contains_answer("Zhu Shijie (1249–1314) solved", ["1314"]) and contains_answer("Sheldon Ungar's view", ["Sheldon Ungar"])
    assert contains_answer("an ice-cream van", ["ice cream"]) and contains_answer("the U.S. Army", ["U.S."])


def test_recall_hits_uses_the_best_evidence_a_row_has():
    ps = {1: Passage(1, "a", "Paris is in France."), 2: Passage(2, "b", "Parisian food."), 3: Passage(3, "c", "Lyon.")}
    hits = Hits(np.array([[2, 1], [3, 1], [2, EMPTY_ID], [3, 2]]), np.zeros((4, 2), dtype=np.float32))
    rows = [QARecord("q", ["x"], positive_ids=[1]),  # id 1 at rank 2
            QARecord("q", ["x"], positive_texts=["Lyon. And more."]),  # passage 3's text inside the positive text
            QARecord("q", ["Paris"]),  # "Parisian" is not the word Paris
            QARecord("q", ["lyon"])]
    passages = hits.passages(type("S", (), {"get": lambda self, ids: [ps[i] for i in ids]})())
    assert recall_hits(hits, rows, passages, 1) == [0.0, 1.0, 0.0, 1.0]
    assert recall_hits(hits, rows, passages, 2) == [1.0, 1.0, 0.0, 1.0]
