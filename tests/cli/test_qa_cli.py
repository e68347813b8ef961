"""`ragtune ask`, `chat` and `eval qa`: with an injected RAG, and end to end over a real index and a tiny model."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import ragtune.cli.qa as qa_cli
from ragtune.generation import Generator
from ragtune.rag.model import RAG
from tests.helpers.tiny_lm import tiny_causal_lm
from tests.rag.fakes import DictStore, FakeRetriever
from tests.helpers.cli import fail, run, trained_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_causal_lm(tmp_path_factory.mktemp("lm"), chat_template=True)


@pytest.fixture
def injected(model_dir, monkeypatch) -> dict:
    seen: dict = {}

    def fake_open(index, **kw):
        seen.update(kw, index=index)
        return RAG(FakeRetriever(), Generator(str(model_dir), max_new_tokens=4), DictStore(), mode=kw.get("mode") or "concat", k=kw.get("k") or 2)

    monkeypatch.setattr(qa_cli, "open_rag", fake_open)
    return seen


def check_answer_json(data: dict, mode: str, k: int) -> None:
    assert set(data) == {"question", "answer", "logprob", "mode", "citations"}  # RagOutput.to_dict, as the server
    assert isinstance(data["answer"], str) and isinstance(data["logprob"], float) and data["mode"] == mode
    assert 1 <= len(data["citations"]) <= k
    for c in data["citations"]:
        assert set(c) == {"id", "doc_id", "title", "text", "prior", "posterior"}
    assert sum(c["posterior"] for c in data["citations"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("mode", ["concat", "rag-sequence", "rag-token"])
def test_ask_json_with_injected_rag(injected, capsys, mode):
    data = json.loads(run(capsys, "ask", "Who won Super Bowl 50?", "--index", "IDX", "--mode", mode, "-k", "3", "--json"))
    check_answer_json(data, mode, 3)
    assert data["citations"][0]["title"] == "Super Bowl 50"
    assert injected["mode"] == mode and injected["k"] == 3 and injected["retriever"] is None  # RAG resolves the default


def test_ask_streams_then_lists_sources(injected, capsys):
    out = run(capsys, "ask", "Who won Super Bowl 50?", "--index", "IDX")
    assert "sources" in out and "posterior" in out and "Super Bowl 50" in out


def test_chat_reads_turns_until_exit(injected, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Who won Super Bowl 50?\n\nWhere was it?\nexit\nnever asked\n"))
    out = run(capsys, "chat", "--index", "IDX", "--sources")
    assert out.count("sources") == 2


def test_eval_qa_json(injected, capsys, tmp_path):
    ds = tmp_path / "qa.jsonl"
    ds.write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": "When was the Eiffel Tower completed?", "answers": ["1889"], "positive_ids": [1]},
        {"question": "Who won Super Bowl 50?", "answers": ["Denver Broncos"], "positive_ids": [2]},
        {"question": "What is the highest mountain?", "answers": ["Mount Everest"]},
    ]))
    data = json.loads(run(capsys, "eval", "qa", "--dataset", str(ds), "--index", "IDX", "--limit", "2", "--json"))
    assert {"em", "f1", "n"} <= set(data) and data["n"] == 2
    assert data["hit_rate"] == 1.0 and data["seconds_per_question"] > 0


def test_eval_qa_squad_json_and_errors(injected, capsys, tmp_path):
    squad = {"data": [{"title": "Super_Bowl_50", "paragraphs": [{"context": "Denver Broncos won Super Bowl 50.", "qas": [
        {"id": "q1", "question": "Who won Super Bowl 50?", "answers": [{"text": "Denver Broncos", "answer_start": 0}]}]}]}]}
    (tmp_path / "dev.json").write_text(json.dumps(squad))
    data = json.loads(run(capsys, "eval", "qa", "--dataset", str(tmp_path / "dev.json"), "--index", "IDX", "--json"))
    assert data["n"] == 1 and 0.0 <= data["f1"] <= 1.0
    assert "--dataset" in fail(capsys, "eval", "qa", "--dataset", str(tmp_path / "missing.json"), "--index", "IDX")
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert "jsonl" in fail(capsys, "eval", "qa", "--dataset", str(tmp_path / "bad.json"), "--index", "IDX")


def test_ask_errors_name_the_fix(capsys, tmp_path):
    assert "ragtune index" in fail(capsys, "ask", "q", "--index", str(tmp_path / "none"))
    assert "rag-token" in fail(capsys, "ask", "q", "--index", str(tmp_path / "none"), "--mode", "fusion")


def test_ask_end_to_end_over_a_real_index(model_dir, tmp_path, capsys):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.txt").write_text("The Eiffel Tower in Paris was completed in 1889 for the World's Fair.", encoding="utf-8")
    (kb / "b.md").write_text("# Tea\n\nGreen tea comes from the leaves of Camellia sinensis.", encoding="utf-8")
    run(capsys, "index", str(kb), "--index", str(tmp_path / "idx"))
    for mode in ("concat", "rag-token"):
        data = json.loads(run(capsys, "ask", "When was the Eiffel Tower completed?", "--index", str(tmp_path / "idx"),
                              "--model", str(model_dir), "--mode", mode, "-k", "2", "--max-new-tokens", "3", "--json"))
        check_answer_json(data, mode, 2)
        assert "Eiffel" in data["citations"][0]["text"]
    # the Python API over the same index
    rag = RAG.from_index(tmp_path / "idx", model=str(model_dir), k=2)
    assert rag.ask("green tea?", max_new_tokens=2).citations[0].title in ("Tea", "b.md", "b")
    ll = rag.loglik(["green tea?"], ["Camellia"], mode="rag-sequence")
    assert ll.shape == (1,)


def test_from_pretrained_layout(model_dir, tmp_path, capsys):
    trained_dir(capsys, tmp_path, model_dir, mode="rag-token", max_new_tokens=2)
    meta = json.loads((tmp_path / "trained" / "ragtune.json").read_text())
    assert meta["rag"]["mode"] == "rag-token" and Path(meta["index"]) == (tmp_path / "idx").resolve()
    again = RAG.from_pretrained(tmp_path / "trained")
    assert again.mode == "rag-token" and again.k == 1 and again.generator.defaults.max_new_tokens == 2
    data = json.loads(run(capsys, "ask", "Eiffel?", "--index", str(tmp_path / "idx"), "--trained", str(tmp_path / "trained"), "--json"))
    check_answer_json(data, "rag-token", 1)
    # the spelling: `ask --model DIR` of a training output loads generator and query encoder together
    data = json.loads(run(capsys, "ask", "Eiffel?", "--index", str(tmp_path / "idx"), "--model", str(tmp_path / "trained"), "--json"))
    check_answer_json(data, "rag-token", 1)


def test_config_rag_retriever_is_the_default(model_dir, tmp_path, capsys):
    from ragtune.config import Config

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.txt").write_text("The Eiffel Tower in Paris was completed in 1889.", encoding="utf-8")
    run(capsys, "index", str(kb), "--index", str(tmp_path / "idx"), "-r", "bm25", "-r", "tfidf")
    toml = tmp_path / "ragtune.toml"
    toml.write_text(f'[generator]\nmodel = {json.dumps(str(model_dir))}\nmax_new_tokens = 2\n[rag]\nretriever = "tfidf"\nk = 1\n')
    assert RAG.open(tmp_path / "idx", config=Config.load(toml)).retriever_kind == "tfidf"
    assert RAG.open(tmp_path / "idx", config=Config.load(toml), retriever="bm25").retriever_kind == "bm25"  # a flag wins
    assert RAG.open(tmp_path / "idx", model=str(model_dir)).retriever_kind == "bm25"  # the index's own config
    seen = {}
    real = qa_cli.open_rag

    def spy(index, **kw):
        rag = real(index, **kw)
        seen["kind"] = rag.retriever_kind
        return rag

    qa_cli.open_rag = spy
    try:
        data = json.loads(run(capsys, "ask", "Eiffel?", "--index", str(tmp_path / "idx"), "--config", str(toml), "--json"))
    finally:
        qa_cli.open_rag = real
    assert seen["kind"] == "tfidf" and len(data["citations"]) == 1
