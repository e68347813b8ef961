from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.corpus.beir import beir_splits, load_beir
from ragtune.errors import RagtuneError
from tests.helpers.datasets import DATASETS


def _write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = [("d1", "Cats", "Cats purr."), ("d2", "Dogs", "Dogs bark."), ("d3", "", "Fish swim.")]
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    queries = [("q1", "what purrs"), ("q2", "what barks"), ("q3", "unjudged")]
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\nq9\td1\t1\n")
    (root / "qrels" / "train.tsv").write_text("q3\td3\t1\n")  # no header
    return root


def test_load_beir(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "tiny")
    corpus, queries, qrels = load_beir(folder)
    docs = list(corpus)
    assert [(d.id, d.title, d.text) for d in docs] == [("d1", "Cats", "Cats purr."), ("d2", "Dogs", "Dogs bark."), ("d3", "", "Fish swim.")]
    assert queries == {"q1": "what purrs", "q2": "what barks"}  # only judged queries; q9 has no text
    assert qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert load_beir(folder, split="train").queries == {"q3": "unjudged"}
    assert beir_splits(folder) == ["test", "train"]


def test_load_beir_errors(tmp_path: Path) -> None:
    with pytest.raises(RagtuneError, match="not found"):
        load_beir(tmp_path / "missing")
    folder = _write_beir(tmp_path / "tiny")
    with pytest.raises(RagtuneError, match=r"no qrels/dev.tsv \(splits found: test, train\)"):
        load_beir(folder, split="dev")
    (folder / "qrels" / "bad.tsv").write_text("q1 d1 1\n")
    with pytest.raises(RagtuneError, match="bad.tsv:1"):
        load_beir(folder, split="bad")
    (folder / "queries.jsonl").unlink()
    with pytest.raises(RagtuneError, match="no queries.jsonl"):
        load_beir(folder)


def test_real_scifact_counts() -> None:
    folder = DATASETS / "scifact"
    if not folder.is_dir():
        pytest.skip("shared SciFact not available")
    _, queries, qrels = load_beir(folder)
    assert len(queries) == 300 and sum(len(r) for r in qrels.values()) == 339
