"""Thorough RAG-Sequence decoding without redundant prefills gives what scoring every (hypothesis, passage) pair
afresh gives (the implementation before it, kept here as the reference), and scores fewer pairs."""
from __future__ import annotations

import pytest
import torch

from ragtune.generation import Generator
from ragtune.generation.scoring import score_after_shared_prompt
from ragtune.rag.decoding import NEG_INF, rag_sequence_decode
from tests.helpers.reference import reference_decode
from tests.helpers.tiny_lm import tiny_causal_lm, tiny_seq2seq_lm
from tests.rag.fakes import PASSAGES


@pytest.fixture(scope="module", params=["llama", "t5"])
def generator(request, tmp_path_factory) -> Generator:
    d = tmp_path_factory.mktemp(request.param)
    path = tiny_seq2seq_lm(d) if request.param == "t5" else tiny_causal_lm(d, chat_template=True)
    return Generator(str(path), max_new_tokens=5)


QUESTIONS = ["When was the Eiffel Tower completed?", "Who won Super Bowl 50?"]


@pytest.mark.parametrize("decoding, n", [("greedy", 1), ("beam", 3)])
def test_same_answers_and_scores_as_scoring_every_pair(generator, decoding, n):
    prompts = [[generator.build_prompt(q, [p]) for p in PASSAGES] for q in QUESTIONS]
    doc_logp = torch.tensor([[-0.5, -1.5, -2.0], [-0.2, NEG_INF, -1.8]])
    kw = dict(decoding=decoding, num_beams=3) if decoding == "beam" else {}
    want = reference_decode(generator, prompts, doc_logp, n, **kw)
    got = rag_sequence_decode(generator, prompts, doc_logp, num_candidates=n, **kw)
    for (text, marg, seq), choice in zip(want, got):
        assert choice.text == text
        assert choice.logprob == pytest.approx(marg, abs=1e-4)
        finite = doc_logp[want.index((text, marg, seq))] != NEG_INF
        torch.testing.assert_close(choice.seq_logp[finite], seq[finite].float(), atol=1e-4, rtol=0)


def test_shared_prompt_scores_equal_full_forward(tmp_path):
    g = Generator(str(tiny_causal_lm(tmp_path, chat_template=True)))
    prompt = g.build_prompt("Who won?", PASSAGES[1:2])
    targets = ["Denver Broncos", "the", "Mount Everest is the highest"]
    with torch.inference_mode():
        lp, mask = g.token_logprobs([prompt] * 3, targets)
    want = (lp * mask).sum(-1).tolist()
    got = score_after_shared_prompt(g, g.encode_prompts([prompt])[0], g.encode_targets(targets, [prompt] * 3))
    assert got == pytest.approx(want, abs=1e-4)
    assert g.sequence_logprobs([prompt, prompt], [targets[:1], []]) == [pytest.approx(want[:1], abs=1e-4), []]


@pytest.mark.parametrize("ends_with_eos", [True, False])
def test_generated_pairs_are_not_scored_again(generator, monkeypatch, ends_with_eos):
    # one passage: the only hypothesis was generated under it; its generation log-prob is reused exactly when its
    # tokens are what scoring the text would use (here: with eos), and scored afresh when not (cut before eos)
    from ragtune.generation.options import Generation

    prompt = generator.build_prompt(QUESTIONS[1], PASSAGES[1:2])
    ids = generator.encode_targets(["Denver Broncos"], [prompt])[0]
    true = generator.sequence_logprobs([prompt], [["Denver Broncos"]])[0][0]
    fake = Generation("Denver Broncos", ids if ends_with_eos else ids[:-1], true if ends_with_eos else -99.0)
    monkeypatch.setattr(generator, "generate", lambda prompts, **kw: [fake])
    asked = []
    real = generator.sequence_logprobs
    monkeypatch.setattr(generator, "sequence_logprobs", lambda p, t: asked.append(sum(map(len, t))) or real(p, t))
    choice = rag_sequence_decode(generator, [[prompt]], torch.tensor([[0.0]]))[0]
    assert asked == [0 if ends_with_eos else 1]
    assert choice.text == "Denver Broncos" and choice.logprob == pytest.approx(true, abs=1e-4)
