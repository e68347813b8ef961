import json

import pytest

from ragtune.errors import RagtuneError
from ragtune.corpus.squad import QARecord
from ragtune.training.data import beir_rows, load_examples, split_examples, squad_rows, write_examples


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path, caplog):
    f = _write(tmp_path / "t.jsonl", [
        json.dumps({"question": "q1", "answers": ["a"], "positive_ids": [1]}),
        "{not json",
        json.dumps({"answers": ["a"]}),
        json.dumps({"question": "q4", "answers": []}),
        json.dumps({"question": "q5", "answers": ["a"], "positive_ids": [99]}),
        "",
        json.dumps({"question": "q7", "answers": "single", "positive_texts": ["p"]}),
    ])
    ex, report = load_examples(f, known_ids={1, 2, 3})
    assert [e.question for e in ex] == ["q1", "q7"]
    assert ex[1].answers == ["single"] and ex[1].line == 7
    assert [p.line for p in report.problems] == [2, 3, 4, 5]
    assert "not in the index" in report.problems[3].message
    assert "line 2" in caplog.text
    with pytest.raises(RagtuneError, match="line 2"):
        load_examples(f, known_ids={1, 2, 3}, strict=True)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(RagtuneError, match="does not exist"):
        load_examples(tmp_path / "nope.jsonl")
    with pytest.raises(RagtuneError, match="no usable rows"):
        load_examples(_write(tmp_path / "bad.jsonl", ["[]"]))


def test_roundtrip_and_split(tmp_path):
    rows = [QARecord(f"q{i}", [f"a{i}"], [i]) for i in range(20)]
    assert write_examples(rows, tmp_path / "r.jsonl") == 20
    back, _ = load_examples(tmp_path / "r.jsonl")
    assert [(e.question, e.answers, e.positive_ids) for e in back] == [(e.question, e.answers, e.positive_ids) for e in rows]
    tr, dev = split_examples(back, 0.25, seed=3)
    assert len(dev) == 5 and len(tr) == 15
    assert {e.question for e in tr}.isdisjoint(e.question for e in dev)
    assert [e.question for e in split_examples(back, 0.25, seed=3)[1]] == [e.question for e in dev]


def test_squad_converter():
    squad = {"data": [
        {"title": "A", "paragraphs": [{"context": "Paris is in France.", "qas": [
            {"question": "Where is Paris? ", "answers": [{"text": "France"}, {"text": "France"}]},
            {"question": "unanswerable", "answers": []}]}]},
        {"title": "B", "paragraphs": [{"context": "x", "qas": [{"question": "q", "answers": [{"text": "x"}]}]}]},
    ]}
    rows = list(squad_rows(squad, articles=slice(0, 1), passage_ids=lambda t, c: [7]))
    assert len(rows) == 1
    assert rows[0].question == "Where is Paris?" and rows[0].answers == ["France"]
    assert rows[0].positive_texts == ["Paris is in France."] and rows[0].positive_ids == [7]


def test_beir_converter(tmp_path):
    (tmp_path / "qrels").mkdir()
    _write(tmp_path / "corpus.jsonl", [json.dumps({"_id": "d1", "title": "", "text": "doc one"}),
                                       json.dumps({"_id": "d2", "title": "", "text": "doc two"})])
    _write(tmp_path / "queries.jsonl", [json.dumps({"_id": "q1", "text": "first"}), json.dumps({"_id": "q2", "text": "second"})])
    _write(tmp_path / "qrels" / "train.tsv", ["query-id\tcorpus-id\tscore", "q1\td2\t1", "q1\td1\t0"])
    rows = list(beir_rows(tmp_path, "train", doc_passage_ids=lambda d: [int(d[1:])]))
    assert len(rows) == 1 and rows[0].question == "first"
    assert rows[0].positive_ids == [2] and rows[0].positive_texts == ["doc two"] and rows[0].answers == []
    write_examples(rows, tmp_path / "b.jsonl")
    with pytest.raises(RagtuneError):
        load_examples(tmp_path / "b.jsonl")
    ex, _ = load_examples(tmp_path / "b.jsonl", require_answers=False)
    assert ex[0].positive_ids == [2]
