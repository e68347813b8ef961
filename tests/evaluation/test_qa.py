"""evaluate_qa and load_qa_dataset against hand-computed scores, with a scripted RAG."""
from __future__ import annotations

import json

import pytest

from ragtune.errors import RagtuneError
from ragtune.evaluation.qa import evaluate_qa, load_qa_dataset
from ragtune.rag.output import Citation, RagOutput

SQUAD = {"data": [{"title": "Eiffel_Tower", "paragraphs": [
    {"context": "The tower was completed in 1889.", "qas": [
        {"id": "q1", "question": "When was it completed?", "answers": [{"text": "1889", "answer_start": 27}]}]},
    {"context": "It is 330 metres tall.", "qas": [
        {"id": "q2", "question": " How tall is it? ", "answers": [{"text": "330 metres", "answer_start": 6}]}]}]}]}


class ScriptedRAG:
    """Answers and cites from a table; records the options each batch was asked with."""

    mode, k = "concat", 2

    def __init__(self, table: dict[str, tuple[str, list[Citation]]]):
        self.table, self.calls = table, []

    def ask_batch(self, questions, **opts):
        self.calls.append((list(questions), opts))
        return [RagOutput(q, self.table[q][0], -1.0, opts["mode"], self.table[q][1], {"retrieval": 0.5, "generation": 1.5})
                for q in questions]


def cite(pid: int, doc: str, text: str) -> Citation:
    return Citation(pid, doc, "", text, 0.5, 0.5)


def test_squad_json_and_jsonl_load_as_one_record_type(tmp_path):
    (tmp_path / "dev.json").write_text(json.dumps(SQUAD))
    rows = load_qa_dataset(tmp_path / "dev.json")
    assert [(r.id, r.question, r.answers, r.positive_doc_ids) for r in rows] == [
        ("q1", "When was it completed?", ["1889"], ["0-0"]), ("q2", "How tall is it?", ["330 metres"], ["0-1"])]
    (tmp_path / "dev.jsonl").write_text('{"question": "q?", "answers": ["a"], "positive_ids": [7]}\n\n{"question": "r?", "answers": "b"}\n')
    rows = load_qa_dataset(tmp_path / "dev.jsonl")
    assert [(r.id, r.question, r.answers, r.positive_ids) for r in rows] == [("1", "q?", ["a"], [7]), ("3", "r?", ["b"], [])]
    with pytest.raises(RagtuneError, match="not found"):
        load_qa_dataset(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(RagtuneError, match="SQuAD-style"):
        load_qa_dataset(tmp_path / "bad.json")


def test_scores_hit_rate_recall_and_timing(tmp_path):
    (tmp_path / "dev.jsonl").write_text(
        '{"question": "q1", "answers": ["The 1889"]}\n'                          # EM 1 (article dropped), no gold: not judged
        '{"question": "q2", "answers": ["330 metres"], "positive_ids": [5]}\n'   # F1 2/3, gold passage 5 cited
        '{"question": "q3", "answers": ["Paris"], "positive_ids": [9]}\n')       # wrong, gold 9 not cited
    examples = load_qa_dataset(tmp_path / "dev.jsonl")
    rag = ScriptedRAG({
        "q1": ("1889", [cite(1, "d1", "built in 1889")]),
        "q2": ("330 feet", [cite(4, "d4", "nothing"), cite(5, "d5", "it is 330 metres tall")]),
        "q3": ("London", [cite(6, "d6", "London")]),
    })
    seen = []
    report = evaluate_qa(rag, examples, batch_size=2, max_new_tokens=3, progress=lambda d, t: seen.append((d, t)))
    assert [c[0] for c in rag.calls] == [["q1", "q2"], ["q3"]]
    assert rag.calls[0][1] == {"mode": "concat", "k": 2, "max_new_tokens": 3}
    assert seen == [(2, 3), (3, 3)]
    assert report.n == 3 and report.mode == "concat" and report.k == 2
    assert report.em == pytest.approx(1 / 3)
    assert report.f1 == pytest.approx((1 + 0.5 + 0) / 3)  # "330 feet" vs "330 metres": P = R = 1/2
    assert report.hit_rate == pytest.approx(1 / 2)  # judged: q2 (hit) and q3 (miss)
    assert report.answer_recall == pytest.approx(2 / 3)  # "1889" and "330 metres" occur in a cited passage
    # each question costs 0.5 s retrieval and 1.5 s generation, whatever the batching
    assert report.retrieval_seconds_per_question == pytest.approx(0.5)
    assert report.generation_seconds_per_question == pytest.approx(1.5)
    assert report.seconds_per_question == pytest.approx(2.0)
    assert [p["cited"] for p in report.predictions] == [["d1"], ["d4", "d5"], ["d6"]]
    assert "predictions" not in report.to_dict() and len(report.to_dict(predictions=True)["predictions"]) == 3
