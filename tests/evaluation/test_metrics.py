import math

import pytest

from ragtune.evaluation.metrics import (dedupe_ranked, exact_match, f1_score, mrr_at_k, ndcg_at_k, recall_at_k,
                                        retrieval_scores)


def test_squad_normalisation():
    assert exact_match("The Eiffel Tower!", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower"]) == 0.0
    assert f1_score("Eiffel", ["eiffel tower"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert f1_score("x", ["a", "x y"]) == pytest.approx(2 / 3)  # max over gold answers


def test_cjk_scored_by_characters():
    assert exact_match("北京 。", ["北京"]) == 1.0
    # prediction 北京市 vs gold 北京: 2 common chars, p = 2/3, r = 1
    assert f1_score("北京市", ["北京"]) == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))


def test_ndcg_recall_mrr_by_hand():
    qrels = {"a": 1, "b": 2}
    ranked = ["x", "b", "a"]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(ranked, qrels, 10) == pytest.approx(dcg / idcg)
    assert recall_at_k(ranked, qrels, 2) == 0.5
    assert mrr_at_k(ranked, qrels) == 0.5
    assert mrr_at_k(["x"], qrels) == 0.0
    scores = retrieval_scores({"q": ranked, "empty": []}, {"q": qrels, "empty": {"z": 1}})
    assert scores["recall@100"] == pytest.approx(0.5) and scores["mrr@10"] == pytest.approx(0.25)


def test_dedupe_keeps_best_rank():
    assert dedupe_ranked(["d1", "d2", "d1", "d3", "d2"]) == ["d1", "d2", "d3"]
