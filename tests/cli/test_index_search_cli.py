import json
from pathlib import Path

import pytest

from tests.helpers.cli import fail, run


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "a.txt").write_text("The Eiffel Tower in Paris was completed in 1889 for the World's Fair.", encoding="utf-8")
    (root / "b.md").write_text("# Tea\n\nGreen tea comes from the leaves of Camellia sinensis.", encoding="utf-8")
    (root / "c.html").write_text("<html><head><title>Coffee</title><script>var x=1;</script></head>"
                                 "<body><p>Coffee beans are roasted seeds.</p></body></html>", encoding="utf-8")
    (root / "d.jsonl").write_text(json.dumps({"id": "q1", "title": "Chess", "text": "Chess is played on an 8x8 board."}) + "\n"
                                  + json.dumps({"id": "q2", "title": "No text"}) + "\n", encoding="utf-8")
    (root / "broken.txt").write_bytes(b"\x00\x01\x02binary\xff\xfe" * 50)
    return root


def test_index_search_json(folder, tmp_path, capsys):
    out = run(capsys, "index", str(folder), "--index", str(tmp_path / "idx"))
    assert "4 file(s) read" in out and "1 skipped" in out and "skipped 1 row(s) without text" in out
    data = json.loads(run(capsys, "search", "when was the Eiffel Tower completed", "--index", str(tmp_path / "idx"), "--json", "-k", "2"))
    assert data["query"].startswith("when")
    top = data["hits"][0]
    assert set(top) >= {"id", "score", "title", "text"} and "1889" in top["text"]
    data = json.loads(run(capsys, "search", "roasted seeds", "--index", str(tmp_path / "idx"), "--json"))
    assert "Coffee beans" in data["hits"][0]["text"] and "var x" not in data["hits"][0]["text"]
    table = run(capsys, "search", "chess board", "--index", str(tmp_path / "idx"))
    assert "Chess" in table


def test_cli_errors(folder, tmp_path, capsys):
    assert "ragtune index" in fail(capsys, "search", "x", "--index", str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no passages" in fail(capsys, "index", str(empty), "--index", str(tmp_path / "idx"))
    assert "does not exist" in fail(capsys, "index", str(tmp_path / "missing"), "--index", str(tmp_path / "idx"))


def test_eval_retrieval_beir(tmp_path, capsys):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [("d1", "Paris", "The Eiffel Tower stands in Paris."), ("d2", "Tea", "Green tea is made from leaves."),
            ("d3", "Coffee", "Coffee is brewed from roasted beans.")]
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "tower in Paris"}) + "\n"
                                        + json.dumps({"_id": "q2", "text": "brewed beans"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    run(capsys, "index", "--beir", str(beir), "--index", str(tmp_path / "idx"))
    out_dir = tmp_path / "report"
    metrics = json.loads(run(capsys, "eval", "retrieval", "--dataset", str(beir), "--index", str(tmp_path / "idx"),
                             "--json", "--out", str(out_dir)))
    assert metrics["ndcg@10"] == pytest.approx(1.0) and metrics["mrr@10"] == pytest.approx(1.0) and metrics["n"] == 2
    rows = [json.loads(l) for l in (out_dir / "per_query.jsonl").read_text().splitlines()]
    assert {r["qid"] for r in rows} == {"q1", "q2"} and rows[0]["top10"][0] in {"d1", "d3"}
    assert "nDCG@10" in (out_dir / "report.md").read_text()


def test_convert_beir_and_squad_map_to_passage_ids(tmp_path, capsys):
    from ragtune.retrieval.index import Index

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = [("d1", "Paris", "The Eiffel Tower stands in Paris."), ("d2", "Tea", "Green tea is made from leaves.")]
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "tower in Paris"}) + "\n"
                                        + json.dumps({"_id": "q2", "text": "no judgement"}) + "\n")
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    run(capsys, "index", "--beir", beir, "--index", tmp_path / "idx", "--retriever", "bm25")
    with Index.open(tmp_path / "idx") as idx:
        d1 = [p.id for batch in idx.store.iter_passages() for p in batch if p.doc_id == "d1"]
    assert "wrote 1 rows" in run(capsys, "convert", "beir", beir, "--out", tmp_path / "b.jsonl", "--index", tmp_path / "idx")
    row = json.loads((tmp_path / "b.jsonl").read_text())
    assert row["question"] == "tower in Paris" and row["positive_ids"] == d1 and "Eiffel" in row["positive_texts"][0]

    squad = {"data": [{"title": "Paris", "paragraphs": [{"context": "The Eiffel Tower stands in Paris.",
                                                        "qas": [{"id": "a", "question": "Where is the tower?",
                                                                 "answers": [{"text": "Paris", "answer_start": 27}]}]}]}]}
    (tmp_path / "s.json").write_text(json.dumps(squad))
    run(capsys, "convert", "squad", tmp_path / "s.json", "--out", tmp_path / "s.jsonl", "--index", tmp_path / "idx")
    row = json.loads((tmp_path / "s.jsonl").read_text())
    assert row["answers"] == ["Paris"] and row["positive_ids"] == d1
    assert "no BEIR qrels" in fail(capsys, "convert", "beir", beir, "--split", "dev", "--out", tmp_path / "x.jsonl")
    assert "START:END" in fail(capsys, "convert", "squad", tmp_path / "s.json", "--out", tmp_path / "x.jsonl", "--articles", "a-b")
