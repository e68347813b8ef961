"""Generator over tiny random models: generation and scoring agree with the raw model, for every architecture."""
from __future__ import annotations

import warnings

import pytest
import torch

from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.generation import Generator
from ragtune.generation.prompts import DEFAULT_TEMPLATE, build_prompt
from tests.helpers.tiny_lm import raw_log_softmax, raw_logprob, tiny_causal_lm, tiny_seq2seq_lm

PASSAGE = Passage(1, "eiffel", "The Eiffel Tower was completed in 1889.", "Eiffel Tower")
ARCHS = ["llama", "gpt2", "llama-chat", "t5", "bart"]


@pytest.fixture(scope="module", params=ARCHS)
def gen(request, tmp_path_factory) -> Generator:
    d = tmp_path_factory.mktemp(request.param)
    if request.param in ("t5", "bart"):
        path = tiny_seq2seq_lm(d, arch=request.param)
    else:
        path = tiny_causal_lm(d, arch=request.param.split("-")[0], chat_template=request.param.endswith("chat"))
    return Generator(str(path), max_new_tokens=5)


def test_token_logprobs_match_raw_model_despite_padding(gen: Generator):
    prompts = [gen.build_prompt("When was it completed?", [PASSAGE]), gen.build_prompt("Who?"), "x"]
    targets = ["1889", "Denver Broncos won", "a"]
    lp, mask = gen.token_logprobs(prompts, targets)
    ys = gen.encode_targets(targets, prompts)
    assert lp.shape == mask.shape == (3, max(map(len, ys)))
    assert mask.sum(-1).tolist() == [len(y) for y in ys]
    assert all(y[-1] == gen.eos_token_ids[0] for y in ys)  # the model learns to stop
    for i in range(3):
        assert float((lp[i] * mask[i]).sum().detach()) == pytest.approx(raw_logprob(gen, prompts[i], ys[i]), abs=1e-4)
    chunked, _ = gen.token_logprobs(prompts, targets, batch_size=1)
    torch.testing.assert_close(chunked, lp, atol=1e-5, rtol=0)
    passes: list[int] = []
    hook = gen.model.register_forward_pre_hook(lambda m, a, kw: passes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    one_per_pass, _ = gen.token_logprobs(prompts, targets, max_tokens=1)  # every row over the bound: alone
    hook.remove()
    assert passes == [1, 1, 1]
    torch.testing.assert_close(one_per_pass, lp, atol=1e-5, rtol=0)


def test_vocab_mean_is_the_mean_log_softmax(gen: Generator):
    prompts = [gen.build_prompt("When was it completed?", [PASSAGE]), "x"]
    targets = ["1889", "a b c"]
    lp, mask, mean = gen.token_logprobs(prompts, targets, vocab_mean=True)
    ys = gen.encode_targets(targets, prompts)
    for i in range(2):
        expect = raw_log_softmax(gen, prompts[i], ys[i]).mean(-1)
        torch.testing.assert_close(mean[i, : len(ys[i])], expect, atol=1e-4, rtol=0)
        assert not mean[i, len(ys[i]):].any()
    torch.testing.assert_close(lp, gen.token_logprobs(prompts, targets)[0])


def test_token_logprobs_has_gradients(gen: Generator):
    lp, mask = gen.token_logprobs(["q"], ["a b"])
    (lp * mask).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.model.parameters())
    gen.model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("decoding", ["greedy", "beam", "sample"])
def test_generate_logprob_is_the_models(gen: Generator, decoding: str):
    prompts = [gen.build_prompt("When was it completed?", [PASSAGE]), gen.build_prompt("Who won?")]
    torch.manual_seed(0)
    outs = gen.generate(prompts, decoding=decoding, num_beams=3)
    assert len(outs) == 2
    for p, o in zip(prompts, outs):
        assert 1 <= len(o.token_ids) <= 5
        assert o.logprob == pytest.approx(raw_logprob(gen, p, o.token_ids), abs=1e-3)


@pytest.mark.parametrize("decoding", ["greedy", "beam"])
def test_min_new_tokens_holds_eos_back(gen: Generator, monkeypatch, decoding: str):
    prompt = gen.build_prompt("Who won?")
    first = gen.generate([prompt], max_new_tokens=1, decoding="greedy")[0].token_ids[0]
    monkeypatch.setattr(gen, "_eos", [first])  # greedy's first token now ends the answer at once
    assert gen.generate([prompt], max_new_tokens=6, decoding="greedy")[0].token_ids == [first]
    got = gen.generate([prompt], max_new_tokens=6, min_new_tokens=4, decoding=decoding, num_beams=3)[0]
    assert len(got.token_ids) >= 4 and first not in got.token_ids[:4]
    assert got.logprob == pytest.approx(raw_logprob(gen, prompt, got.token_ids), abs=1e-3)  # the model's, not renormalised
    assert gen.options({"min_new_tokens": 9, "max_new_tokens": 6}).min_new_tokens == 6  # a call's shorter limit wins
    with pytest.raises(RagtuneError, match="min_new_tokens"):
        gen.options({"min_new_tokens": -1})


def test_greedy_batch_equals_one_by_one(gen: Generator):
    prompts = [gen.build_prompt("When was it completed?", [PASSAGE]), "short"]
    batched = gen.generate(prompts)
    single = [gen.generate([p])[0] for p in prompts]
    assert [o.token_ids for o in batched] == [o.token_ids for o in single]


def test_num_return_sequences_and_stream(gen: Generator):
    outs = gen.generate(["a question"], decoding="beam", num_beams=3, num_return_sequences=3)
    assert len(outs) == 3
    # beam order is by length-normalised score (length_penalty 1): logprob / number of tokens, best first
    scores = [o.logprob / len(o.token_ids) for o in outs]
    assert all(a >= b - 1e-4 for a, b in zip(scores, scores[1:])), scores
    assert len({tuple(o.token_ids) for o in outs}) == 3  # three distinct hypotheses, not one repeated
    greedy = gen.generate(["a question"])[0].text
    assert "".join(gen.stream("a question")).strip() == greedy


def test_cached_step_follows_forks_like_the_raw_model(gen: Generator):
    prompts = [gen.build_prompt("When was it completed?", [PASSAGE]), "x"]
    step = gen.cached_step(prompts)
    first = step.first()
    for i, p in enumerate(prompts):
        torch.testing.assert_close(first[i], raw_log_softmax(gen, p, [5])[0], atol=1e-4, rtol=0)
    # row 0 forks into two continuations, row 1 continues once: (prompt, token) per new row
    rows, tokens = torch.tensor([0, 0, 1]), torch.tensor([5, 7, 9])
    nxt = step.next(rows, tokens)
    for r, (src, tok) in enumerate(zip(rows.tolist(), tokens.tolist())):
        torch.testing.assert_close(nxt[r], raw_log_softmax(gen, prompts[src], [tok, 3])[1], atol=1e-4, rtol=0)


def test_options_and_decode(gen: Generator):
    o = gen.options({"decoding": "beam", "stop": ["\n"], "num_beams": None})
    assert o.decoding == "beam" and o.stop == ("\n",) and o.num_beams == gen.defaults.num_beams == 4
    with pytest.raises(TypeError, match="unknown generation options"):
        gen.options({"beams": 2})
    with pytest.raises(RagtuneError, match="greedy, beam or sample"):
        gen.options({"decoding": "nucleus"})
    ids = gen.tokenizer("hello world. more", add_special_tokens=False)["input_ids"] + [gen.eos_token_ids[0]]
    text = gen.tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert gen.decode(ids) == text
    assert gen.decode(ids, stop=[text[3:5]]) == text[:3].strip()


def test_stop_strings_cut_text(tmp_path):
    g = Generator(str(tiny_causal_lm(tmp_path)), max_new_tokens=8)
    full = g.generate(["Question: who won?"])[0]
    if len(full.text) < 2:
        pytest.skip("random model produced too little text")
    stop = full.text[1:3]
    cut = g.generate(["Question: who won?"], stop=[stop])[0]
    assert stop not in cut.text and full.text.startswith(cut.text)
    assert "".join(g.stream("Question: who won?", stop=[stop])).strip() == cut.text


def test_prompt_template():
    text = build_prompt("When?", [PASSAGE, Passage(2, "d", "Other text.")])
    assert "[1] Eiffel Tower\nThe Eiffel Tower was completed in 1889." in text and "[2] Other text." in text
    assert text.rstrip().endswith("Question: When?\nAnswer:")
    assert "passages" not in build_prompt("When?").lower()  # closed book does not mention passages
    assert "User: hi\nAssistant: hello" in build_prompt("When?", [PASSAGE], [("hi", "hello")])
    assert build_prompt("Q", [PASSAGE], template="{passages}Q: {question}") == "[1] Eiffel Tower\nThe Eiffel Tower was completed in 1889.\n\nQ: Q"
    assert "{passages}" in DEFAULT_TEMPLATE
    with pytest.raises(RagtuneError):
        Generator("x", prompt_template="{context} {question}")
    with pytest.raises(RagtuneError):
        Generator("x", prompt_template="no question here")


def test_chat_template_is_applied(tmp_path):
    g = Generator(str(tiny_causal_lm(tmp_path, chat_template=True)))
    assert g.render("hi").startswith("<s>user\nhi</s>") and g.render("hi").endswith("<s>assistant\n")
    raw = Generator(str(tmp_path), use_chat_template=False)
    assert raw.render("hi") == "hi"


def test_save_load_roundtrip(tmp_path):
    g = Generator(str(tiny_causal_lm(tmp_path / "m")), max_new_tokens=4, min_new_tokens=6, stop=["\n"],
                  prompt_template="{passages}Q: {question}\nA:")
    g.save(tmp_path / "saved")
    h = Generator.load(tmp_path / "saved")
    assert h.defaults.max_new_tokens == 4 and h.defaults.stop == ("\n",) and h.prompt_template == g.prompt_template
    # the minimum is kept as configured: a call with room for it gets it, one with less room gets its own maximum
    assert h.defaults.min_new_tokens == 6
    assert h.options({"max_new_tokens": 8}).min_new_tokens == 6 and h.options({}).min_new_tokens == 4
    assert h.generate(["q"])[0].token_ids == g.generate(["q"])[0].token_ids


def test_lora_adapter_directory_loads(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tiny_causal_lm(tmp_path / "base")
    with warnings.catch_warnings():  # PEFT's own use of transformers' old checkpointing names (ragtune quiets it)
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    g = Generator(model, tokenizer=AutoTokenizer.from_pretrained(base), max_new_tokens=3)
    before = g.token_logprobs(["q"], ["a"])[0]
    g.save(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # loading a trained adapter prints nothing at the user
        h = Generator.load(tmp_path / "lora")
        h.model  # noqa: B018 - loads now, inside the check
    torch.testing.assert_close(h.token_logprobs(["q"], ["a"])[0].detach(), before.detach())


def test_missing_model_is_a_ragtune_error(tmp_path):
    with pytest.raises(RagtuneError, match="--model"):
        Generator(str(tmp_path / "nope")).generate(["q"])
