"""The CTranslate2 backend against the torch one on a tiny model: float32 greedy answers identical, log-probs
and scores equal to 1e-4, beams and stop strings the same; exports cached and redone when the source changes."""
import json

import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2", reason="the fast backend is the optional extra ragtune[fast]")

from ragtune.errors import RagtuneError  # noqa: E402
from ragtune.generation.ct2 import CT2Generator, compute_type_for  # noqa: E402
from ragtune.generation.backends import backend_class  # noqa: E402
from ragtune.generation.generator import Generator  # noqa: E402
from ragtune.models import ctranslate2 as ct2_models  # noqa: E402
from tests.helpers.tiny_lm import tiny_causal_lm  # noqa: E402

PROMPTS = ["Question: who won? Answer:", "The Eiffel Tower is in", "Mount Everest is the highest"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return tiny_causal_lm(tmp_path_factory.mktemp("lm"), chat_template=True)


@pytest.fixture(autouse=True, scope="module")
def cache(tmp_path_factory):
    # one conversion cache for the module: each test converts nothing it need not
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGTUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def pair(lm, **kw):
    return Generator(str(lm), **kw), CT2Generator(str(lm), compute_type="float32", **kw)


def test_greedy_float32_is_identical_to_torch(lm):
    torch_g, fast = pair(lm, max_new_tokens=12)
    want, got = torch_g.generate(PROMPTS), fast.generate(PROMPTS)
    assert [g.text for g in got] == [w.text for w in want]
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert [g.logprob for g in got] == pytest.approx([w.logprob for w in want], abs=1e-4)


def test_beam_and_stop_strings_match_torch(lm):
    torch_g, fast = pair(lm, max_new_tokens=10)
    kw = dict(decoding="beam", num_beams=3, num_return_sequences=2)
    want, got = torch_g.generate(PROMPTS, **kw), fast.generate(PROMPTS, **kw)
    assert len(got) == 6
    # beam log-probs are rescored under the raw model, as torch reports them
    assert [g.logprob for g in got] == pytest.approx([w.logprob for w in want], abs=1e-3)
    stop = [torch_g.generate(PROMPTS[:1])[0].text[2:4]]  # a piece of the greedy answer: it must be cut there
    want, got = torch_g.generate(PROMPTS[:1], stop=stop), fast.generate(PROMPTS[:1], stop=stop)
    assert got[0].text == want[0].text and stop[0] not in got[0].text


def test_min_new_tokens_matches_torch(lm, monkeypatch):
    torch_g, fast = pair(lm, max_new_tokens=8)
    first = torch_g.generate(PROMPTS[:1], max_new_tokens=1)[0].token_ids[0]
    for g in (torch_g, fast):  # greedy's first token ends the answer: only min_new_tokens keeps it going
        g.model  # noqa: B018 - loads, setting the eos ids replaced below
        monkeypatch.setattr(g, "_eos", [first])
    assert fast.generate(PROMPTS[:1])[0].token_ids == [first]
    for kw in (dict(decoding="greedy"), dict(decoding="beam", num_beams=3)):
        want, got = torch_g.generate(PROMPTS, min_new_tokens=5, **kw), fast.generate(PROMPTS, min_new_tokens=5, **kw)
        assert [g.token_ids for g in got] == [w.token_ids for w in want]
        assert all(len(g.token_ids) >= 5 and first not in g.token_ids[:5] for g in got)
        assert [g.logprob for g in got] == pytest.approx([w.logprob for w in want], abs=1e-3)


def test_token_logprobs_equal_torch(lm):
    torch_g, fast = pair(lm)
    targets = ["Paris", "Denver Broncos", "the Himalayas"]
    with torch.no_grad():
        want_lp, want_mask = torch_g.token_logprobs(PROMPTS, targets)
    got_lp, got_mask = fast.token_logprobs(PROMPTS, targets)
    assert torch.equal(got_mask, want_mask.cpu())
    torch.testing.assert_close(got_lp, want_lp.cpu(), atol=1e-4, rtol=0)
    with pytest.raises(RagtuneError, match="torch backend"):
        fast.token_logprobs(PROMPTS, targets, vocab_mean=True)


def test_scoring_in_length_buckets_keeps_the_input_order(lm):
    """Rows of 2x different lengths, long and short interleaved: scored in separate buckets, returned in order."""
    from ragtune.models.batching import length_buckets

    torch_g, fast = pair(lm)
    long = " ".join(["the history of the mountain range and its people"] * 6)
    prompts = [long + " " + PROMPTS[0], PROMPTS[1], long + " " + PROMPTS[2], PROMPTS[0]]
    targets = ["Paris", "Denver Broncos", "the Himalayas", ""]
    p_ids, y_ids = fast.encode_prompts(prompts), fast.encode_targets(targets, prompts)
    assert len(length_buckets([len(p) + len(y) for p, y in zip(p_ids, y_ids)], max_rows=4)) > 1  # really split
    with torch.no_grad():
        want_lp, want_mask = torch_g.token_logprobs(prompts, targets)
    got_lp, got_mask = fast.token_logprobs(prompts, targets)
    assert torch.equal(got_mask, want_mask.cpu())
    torch.testing.assert_close(got_lp, want_lp.cpu(), atol=1e-4, rtol=0)


def test_streaming_pieces_make_the_answer(lm):
    _, fast = pair(lm, max_new_tokens=12)
    whole = fast.generate(PROMPTS[:1])[0].text
    assert "".join(fast.stream(PROMPTS[0])).strip() == whole


def test_rag_token_step_runs_on_a_torch_twin(lm, caplog):
    torch_g, fast = pair(lm)
    want = torch_g.cached_step(PROMPTS).first()
    got = fast.cached_step(PROMPTS).first()
    torch.testing.assert_close(got, want)
    assert fast._twin is not None and fast._twin.backend == "torch"


def test_export_is_cached_and_redone_when_the_source_changes(lm, tmp_path):
    src = tmp_path / "model"
    import shutil

    shutil.copytree(lm, src)
    first = ct2_models.cached_export(src)
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert ct2_models.cached_export(src) == first and (first / "model.bin").stat().st_mtime_ns == stamp  # reused
    config = json.loads((src / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5 if config.get("rms_norm_eps") != 1e-5 else 2e-5
    (src / "config.json").write_text(json.dumps(config))
    again = ct2_models.cached_export(src)
    assert again == first and (again / "model.bin").stat().st_mtime_ns != stamp  # stale: converted again
    marker = json.loads((again / ct2_models.MARKER).read_text())
    assert marker["fingerprint"] == ct2_models.source_fingerprint(src)


def test_backend_choice(lm, tmp_path):
    assert backend_class(None, str(lm)) is Generator
    assert backend_class("ctranslate2") is CT2Generator
    export = ct2_models.export(lm, tmp_path / "exported")
    assert backend_class(None, str(export)) is CT2Generator  # an export given as --model runs on the fast backend
    assert CT2Generator(str(export), compute_type="float32").generate(PROMPTS[:1])[0].text == \
        Generator(str(lm)).generate(PROMPTS[:1])[0].text
    with pytest.raises(RagtuneError, match="unknown generator backend"):
        backend_class("onnx")
    assert compute_type_for("cpu", "auto") == "int8" and compute_type_for("cuda:0", "auto") == "float16"
    with pytest.raises(RagtuneError, match="torch backend"):
        CT2Generator(str(lm)).add_lora(r=4, alpha=8, dropout=0.0)


def test_missing_ctranslate2_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ct2(name, *a, **k):
        if name == "ctranslate2":
            raise ImportError("no ctranslate2")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ct2)
    with pytest.raises(RagtuneError, match=r"pip install 'ragtune\[fast\]'"):
        ct2_models.require()


def test_unsupported_architecture_is_one_line(tmp_path):
    from tests.helpers.tiny_lm import tiny_seq2seq_lm

    t5 = tiny_seq2seq_lm(tmp_path / "t5")
    with pytest.raises(RagtuneError, match="--backend torch"):
        CT2Generator(str(t5)).generate(["a question"])
