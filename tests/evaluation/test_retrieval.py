"""evaluate_retrieval over a fixed ranking: document dedup, hand-computed metrics and the written report."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ragtune.evaluation.retrieval import evaluate_retrieval
from ragtune.retrieval.base import EMPTY_ID, Hits

RANKING = {"first query": [1, 2, 3], "second query": [4, EMPTY_ID, EMPTY_ID], "unjudged": [1, 2, 3]}
DOCS = {1: "a", 2: "a", 3: "b", 4: "c"}  # passages 1 and 2 are chunks of document a


class FixedRetriever:
    def __init__(self):
        self.asked: list[tuple[list[str], int]] = []

    def search(self, queries, k):
        self.asked.append((list(queries), k))
        ids = np.array([RANKING[q] for q in queries], dtype=np.int64)
        return Hits(ids, np.where(ids == EMPTY_ID, -np.inf, 1.0).astype(np.float32))


def test_metrics_per_query_and_overall(tmp_path):
    retriever = FixedRetriever()
    queries = {"q1": "first query", "q2": "second query", "q3": "unjudged"}
    qrels = {"q1": {"b": 1}, "q2": {"c": 2, "a": 1}, "q0": {"x": 1}}  # q0 has no query text: skipped
    res = evaluate_retrieval(retriever, lambda ids: [DOCS[i] for i in ids], queries, qrels, depth=10, passages_per_doc=2,
                             batch_size=1)
    assert retriever.asked == [(["first query"], 20), (["second query"], 20)]
    rows = {r["qid"]: r for r in res.per_query}
    assert rows["q1"]["top10"] == ["a", "b"] and rows["q2"]["top10"] == ["c"]  # a's two chunks count once
    ndcg1 = 1 / math.log2(3)  # b at rank 2
    ndcg2 = 2 / (2 + 1 / math.log2(3))  # c (gain 2) at rank 1; a (gain 1) missing
    assert rows["q1"]["ndcg@10"] == pytest.approx(ndcg1) and rows["q2"]["ndcg@10"] == pytest.approx(ndcg2)
    assert rows["q1"]["mrr@10"] == 0.5 and rows["q2"]["mrr@10"] == 1.0
    assert rows["q2"]["recall@100"] == 0.5 and rows["q2"]["relevant"] == ["a", "c"]
    assert res.metrics == pytest.approx({"ndcg@10": (ndcg1 + ndcg2) / 2, "recall@10": 0.75, "recall@100": 0.75, "mrr@10": 0.75})
    jsonl, md = res.write(tmp_path / "report", "toy")
    assert [json.loads(l)["qid"] for l in jsonl.read_text().splitlines()] == ["q1", "q2"]
    text = md.read_text()
    assert text.startswith("# toy\n") and f"| ndcg@10 | {(ndcg1 + ndcg2) / 2:.4f} |" in text
