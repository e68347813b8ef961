from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.corpus.squad import load_qa_jsonl, load_squad, open_book_split
from ragtune.errors import RagtuneError
from tests.helpers.datasets import DATASETS

SQUAD_DEV = DATASETS / "squad_v1.1" / "dev-v1.1.json"
CMRC_TRIAL = DATASETS / "cmrc2018" / "cmrc2018_trial.json"


def _tiny_squad(path: Path, n_articles: int = 4) -> Path:
    data = [
        {
            "title": f"Article_{a}",
            "paragraphs": [
                {"context": f"Context {a}.{p}", "qas": [{"id": f"q{a}{p}{i}", "question": f" Q{a}{p}{i}? ",
                                                         "answers": [{"text": "x", "answer_start": 0}]} for i in range(2)]}
                for p in range(2)
            ],
        }
        for a in range(n_articles)
    ]
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


def test_load_tiny_squad_and_split(tmp_path: Path) -> None:
    data = load_squad(_tiny_squad(tmp_path / "s.json"))
    assert [d.id for d in data.documents] == ["0-0", "0-1", "1-0", "1-1", "2-0", "2-1", "3-0", "3-1"]
    assert data.documents[3].title == "Article 1" and data.documents[3].text == "Context 1.1"
    q = data.questions[2]
    assert (q.id, q.question, q.answers, q.positive_doc_ids, data.article(q)) == ("q010", "Q010?", ["x"], ["0-1"], 0)
    split = open_book_split(data, train_articles=3)
    assert len(split.documents) == 8 and len(split.train) == 12 and len(split.test) == 4
    assert {data.article(q) for q in split.test} == {3}
    assert len(open_book_split(data, train_articles=1, test_articles=2).test) == 8
    with pytest.raises(RagtuneError):
        open_book_split(data, train_articles=4)


@pytest.mark.skipif(not SQUAD_DEV.is_file(), reason="shared SQuAD dev set not available")
def test_squad_v11_open_book_split_counts() -> None:
    data = load_squad(SQUAD_DEV)
    assert data.n_articles == 48 and len(data.documents) == 2067 and len(data.questions) == 10570
    split = open_book_split(data)
    assert len(split.train) == 8123 and len(split.test) == 2447
    assert data.titles[36] == "Yuan dynasty" and data.titles[47] == "Force"
    assert len(split.documents) == 2067


@pytest.mark.skipif(not CMRC_TRIAL.is_file(), reason="shared CMRC 2018 not available")
def test_cmrc_is_squad_style() -> None:
    data = load_squad(CMRC_TRIAL)
    assert len(data.documents) == 256 and len(data.questions) == 1002


def test_load_squad_errors(tmp_path: Path) -> None:
    with pytest.raises(RagtuneError, match="not found"):
        load_squad(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(RagtuneError, match="'data'"):
        load_squad(tmp_path / "bad.json")


def test_load_qa_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "qa.jsonl"
    f.write_text(
        '{"question": "Who?", "answers": ["me"], "positive_ids": [3], "positive_texts": ["t"]}\n'
        "\n"
        '{"question": "What?", "answers": "it"}\n'
        "not json\n"
        '{"question": "", "answers": []}\n'
        '{"question": "Ids?", "answers": [], "positive_ids": ["x"]}\n'
    )
    with pytest.raises(RagtuneError, match="line 4: not valid JSON"):
        load_qa_jsonl(f)
    problems: list[str] = []
    rows = load_qa_jsonl(f, strict=False, problems=problems)
    assert [(r.question, r.answers, r.positive_ids, r.line) for r in rows] == [("Who?", ["me"], [3], 1), ("What?", ["it"], [], 3)]
    assert [p.split(": ", 1)[0].rsplit(" ", 1)[-1] for p in problems] == ["4", "5", "6"]
