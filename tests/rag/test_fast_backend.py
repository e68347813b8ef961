"""RAG over the CTranslate2 backend gives the torch backend's answers, log-probabilities and posteriors (float32),
in every mode; a trained directory exported for it answers through `ragtune ask --model OUT`."""
import json

import pytest

pytest.importorskip("ctranslate2", reason="the fast backend is the optional extra ragtune[fast]")

from ragtune.generation.ct2 import CT2Generator  # noqa: E402
from ragtune.generation.generator import Generator  # noqa: E402
from ragtune.rag.model import RAG  # noqa: E402
from tests.helpers.cli import run, trained_dir  # noqa: E402
from tests.helpers.tiny_lm import tiny_causal_lm  # noqa: E402
from tests.rag.fakes import DictStore, FakeRetriever  # noqa: E402

QUESTIONS = ["When was the Eiffel Tower completed?", "Who won Super Bowl 50?"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return tiny_causal_lm(tmp_path_factory.mktemp("lm"), chat_template=True)


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGTUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.mark.parametrize("mode", ["concat", "rag-sequence", "rag-token"])
def test_answers_equal_torch(lm, mode):
    outs = []
    for gen in (Generator(str(lm), max_new_tokens=6), CT2Generator(str(lm), max_new_tokens=6, compute_type="float32")):
        outs.append(RAG(FakeRetriever(), gen, DictStore(), mode=mode, k=2).ask_batch(QUESTIONS))
    for want, got in zip(*outs):
        assert got.answer == want.answer
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)
        assert [c.id for c in got.citations] == [c.id for c in want.citations]
        assert [c.posterior for c in got.citations] == pytest.approx([c.posterior for c in want.citations], abs=1e-3)


def test_export_of_a_trained_directory_runs_with_ask(lm, tmp_path, capsys):
    trained_dir(capsys, tmp_path, lm, mode="concat", max_new_tokens=4)
    run(capsys, "export", str(tmp_path / "trained"), "--out", str(tmp_path / "fast"))
    assert (tmp_path / "fast" / "generator" / "model.bin").exists()
    torch_answer = json.loads(run(capsys, "ask", "Eiffel?", "--index", str(tmp_path / "idx"), "--model", str(tmp_path / "trained"), "--json"))
    fast = RAG.open(tmp_path / "idx", model=tmp_path / "fast")
    assert isinstance(fast.generator, CT2Generator) and fast.generator.defaults.max_new_tokens == 4
    fast.generator.compute_type = "float32"
    assert fast.ask("Eiffel?").answer == torch_answer["answer"]
    data = json.loads(run(capsys, "ask", "Eiffel?", "--index", str(tmp_path / "idx"), "--model", str(tmp_path / "fast"), "--json"))
    assert data["mode"] == "concat" and len(data["citations"]) == 1
    backend = json.loads(run(capsys, "ask", "Eiffel?", "--index", str(tmp_path / "idx"), "--model", str(lm),
                             "--backend", "ctranslate2", "--json"))
    assert set(backend) >= {"answer", "logprob", "citations"}


def test_serve_answers_on_the_fast_backend(lm, tmp_path):
    from fastapi.testclient import TestClient

    from ragtune.config import Config
    from ragtune.retrieval.update import update
    from ragtune.server import create_app

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.txt").write_text("The Eiffel Tower in Paris was completed in 1889.", encoding="utf-8")
    update(tmp_path / "idx", [kb], config=Config().updated(generator={"model": str(lm), "max_new_tokens": 3}))
    app = create_app(tmp_path / "idx", backend="ctranslate2")
    out = TestClient(app).post("/api/ask", json={"question": "When was the Eiffel Tower completed?", "k": 1})
    assert out.status_code == 200, out.text
    assert isinstance(app.state.holder.generator, CT2Generator)
    direct = RAG.open(tmp_path / "idx", backend="ctranslate2", k=1).ask("When was the Eiffel Tower completed?")
    assert out.json()["answer"] == direct.answer and out.json()["citations"][0]["text"].startswith("The Eiffel Tower")
