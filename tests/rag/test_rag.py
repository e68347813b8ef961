"""The RAG marginals, decoders and citations against brute-force computations with the raw model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ragtune.errors import RagtuneError
from ragtune.generation import Generator
from ragtune.rag.decoding import beam_search
from ragtune.rag.model import RAG
from ragtune.rag.output import RagOutput
from ragtune.retrieval.base import Hits
from tests.helpers.tiny_lm import raw_logprob, tiny_causal_lm, tiny_seq2seq_lm
from tests.rag.fakes import PASSAGES, DictStore, FakeRetriever

Q = ["When was the Eiffel Tower completed?", "Who won Super Bowl 50?"]
A = ["1889", "Denver Broncos"]


@pytest.fixture(scope="module", params=["llama", "t5"])
def rag(request, tmp_path_factory) -> RAG:
    d = tmp_path_factory.mktemp(request.param)
    path = tiny_seq2seq_lm(d) if request.param == "t5" else tiny_causal_lm(d, chat_template=True)
    return RAG(FakeRetriever(), Generator(str(path), max_new_tokens=4), DictStore(), k=3, doc_temperature=2.0)


def raw_loglik(g: Generator, prompt: str, answer: str) -> float:
    """log P(answer + eos | prompt) from one unpadded forward pass of the raw model."""
    return raw_logprob(g, prompt, g.encode_targets([answer], [prompt])[0])


def test_rag_sequence_loglik_is_brute_force_marginal(rag: RAG):
    hits = rag.retrieve(Q)
    got = rag.loglik(Q, A, hits=hits, mode="rag-sequence")
    for b, (q, a) in enumerate(zip(Q, A)):
        prior = torch.log_softmax(torch.tensor(hits.scores[b], dtype=torch.float64) / 2.0, 0)
        per_z = [raw_loglik(rag.generator, rag.generator.build_prompt(q, [p]), a) for p in rag.store.get(hits.ids[b].tolist())]
        expected = torch.logsumexp(prior + torch.tensor(per_z, dtype=torch.float64), 0)
        assert float(got[b]) == pytest.approx(float(expected), abs=1e-4)


def test_rag_token_with_one_passage_is_the_generator_loglik(rag: RAG):
    hits = rag.retrieve(Q, k=1)
    got = rag.loglik(Q, A, hits=hits, mode="rag-token")
    for b, (q, a) in enumerate(zip(Q, A)):
        p = rag.store.get([int(hits.ids[b, 0])])[0]
        assert float(got[b]) == pytest.approx(raw_loglik(rag.generator, rag.generator.build_prompt(q, [p]), a), abs=1e-4)
    # and with k = 1 all three modes agree
    for mode in ("rag-sequence", "concat"):
        torch.testing.assert_close(rag.loglik(Q, A, hits=hits, mode=mode), got, atol=1e-4, rtol=0)


def test_rag_token_loglik_is_per_token_mixture(rag: RAG):
    hits = rag.retrieve(Q[:1])
    g = rag.generator
    prompts = [g.build_prompt(Q[0], [p]) for p in rag.store.get(hits.ids[0].tolist())]
    lp, mask = g.token_logprobs(prompts, [A[0]] * 3)
    prior = torch.log_softmax(torch.from_numpy(hits.scores[0]) / 2.0, 0)
    expected = sum(torch.logsumexp(prior + lp[:, t], 0) for t in range(int(mask[0].sum())))
    assert float(rag.loglik(Q[:1], A[:1], hits=hits, mode="rag-token")[0]) == pytest.approx(float(expected), abs=1e-4)


def test_doc_scores_carry_gradients(rag: RAG):
    hits = rag.retrieve(Q)
    scores = torch.tensor(hits.scores, requires_grad=True)
    for mode in ("rag-sequence", "rag-token"):
        ll = rag.loglik(Q, A, hits=hits, doc_scores=scores, mode=mode)
        assert ll.shape == (2,)
        ll.sum().backward()
        assert scores.grad is not None and scores.grad.abs().sum() > 0
        scores.grad = None
    rag.generator.model.zero_grad(set_to_none=True)


def test_empty_slots_and_empty_rows_are_safe(rag: RAG):
    ids = np.array([[1, -1, -1], [-1, -1, -1]])
    sc = np.array([[3.0, -np.inf, -np.inf], [-np.inf] * 3], dtype=np.float32)
    hits = Hits(ids, sc)
    for mode in ("concat", "rag-sequence", "rag-token"):
        ll = rag.loglik(Q, A, hits=hits, mode=mode)
        assert torch.isfinite(ll).all()
    lp = rag.doc_log_prior(hits)
    assert lp[0, 0] == 0 and lp[1, 0] == 0 and torch.isinf(lp[:, 1:]).all()


@pytest.mark.parametrize("mode", ["concat", "rag-sequence", "rag-token"])
@pytest.mark.parametrize("decoding", ["greedy", "beam"])
def test_ask_posterior_sums_to_one(rag: RAG, mode: str, decoding: str):
    out = rag.ask(Q[0], mode=mode, decoding=decoding, num_beams=2)
    assert isinstance(out, RagOutput) and out.mode == mode
    assert [c.id for c in out.citations] == rag.retrieve(Q[:1]).ids[0].tolist()
    assert sum(c.posterior for c in out.citations) == pytest.approx(1.0, abs=1e-5)
    assert sum(c.prior for c in out.citations) == pytest.approx(1.0, abs=1e-5)
    assert math.isfinite(out.logprob)
    # the posterior is p(z|q) P(y|q,z) normalised, with P(y|q,z) from the answer under passage z alone
    g = rag.generator
    seq = torch.tensor([raw_loglik(g, g.build_prompt(Q[0], [PASSAGES[c.id - 1]]), out.answer) for c in out.citations])
    prior = torch.log(torch.tensor([c.prior for c in out.citations]))
    expected = torch.softmax(prior + seq, 0)
    assert [c.posterior for c in out.citations] == pytest.approx(expected.tolist(), abs=1e-3)
    d = out.to_dict()
    assert set(d) == {"question", "answer", "logprob", "mode", "citations"} and RagOutput.from_dict(d) == out


def test_rag_token_greedy_with_one_passage_equals_concat(rag: RAG):
    for q in Q:
        a = rag.ask(q, mode="rag-token", k=1)
        b = rag.ask(q, mode="concat", k=1)
        assert a.answer == b.answer


def test_rag_token_greedy_follows_the_mixture(rag: RAG):
    """Each token of the cached, batched decoder is the argmax of the mixture recomputed from scratch."""
    from ragtune.rag.decoding import rag_token_decode

    g = rag.generator
    hits = rag.retrieve(Q)
    rows = hits.passages(rag.store)
    prompts = [[g.build_prompt(q, [p]) for p in r] for q, r in zip(Q, rows)]
    doc_logp = rag.doc_log_prior(hits).detach()
    hyps = rag_token_decode(g, prompts, doc_logp, num_beams=1, max_new_tokens=4)
    for b in range(2):
        prefix: list[int] = []
        for tok in hyps[b].tokens:
            logps = []
            for z in range(3):
                p = torch.tensor([g.encode_prompts([prompts[b][z]])[0]])
                with torch.no_grad():
                    if g.is_seq2seq:
                        dec = torch.tensor([[g.model.config.decoder_start_token_id] + prefix])
                        logits = g.model(input_ids=p, decoder_input_ids=dec).logits[0, -1]
                    else:
                        logits = g.model(input_ids=torch.cat([p, torch.tensor([prefix], dtype=torch.long)], 1)).logits[0, -1]
                logps.append(logits.log_softmax(-1))
            mix = torch.logsumexp(doc_logp[b][:, None] + torch.stack(logps), 0)
            assert int(mix.argmax()) == tok
            prefix.append(tok)


def test_rag_sequence_fast_and_thorough(rag: RAG):
    thorough = rag.ask(Q[0], mode="rag-sequence", decoding="beam", num_beams=2)
    fast = rag.ask(Q[0], mode="rag-sequence", decoding="beam", num_beams=2, thorough=False)
    assert thorough.logprob >= fast.logprob - 1e-4 or thorough.answer != fast.answer
    # thorough logprob is the marginal of its answer
    ll = rag.loglik(Q[:1], [thorough.answer], mode="rag-sequence")
    assert thorough.logprob == pytest.approx(float(ll[0]), abs=1e-3)


def test_ask_batch_stream_and_chat(rag: RAG):
    outs = rag.ask_batch(Q)
    assert [o.question for o in outs] == Q
    assert outs[0].answer == rag.ask(Q[0]).answer
    stream = rag.stream(Q[0])
    text = "".join(stream)
    assert text.strip() == outs[0].answer and stream.output is not None and stream.output.answer == outs[0].answer
    assert sum(c.posterior for c in stream.output.citations) == pytest.approx(1.0, abs=1e-5)
    s2 = rag.stream(Q[0], mode="rag-token")
    assert "".join(s2) == s2.output.answer
    out = rag.chat_turn([("Who won Super Bowl 50?", "Denver Broncos")], "Where was it played?")
    assert rag.retriever.queries[-1] == "Who won Super Bowl 50? Where was it played?"
    assert out.citations[0].id == 2  # the history steered retrieval to the Super Bowl passage
    assert out.timing["generation"] > 0 and out.timing["retrieval"] > 0  # the answer carries its own timing


def test_prompt_exchanges_trims_the_reply_prompt_not_retrieval(rag: RAG):
    from ragtune.config import ChatConfig

    history = [("Tell me about Paris.", "It is in France."), ("Who won Super Bowl 50?", "Denver Broncos")]
    row = rag.store.get([2])
    before = rag.chat
    try:
        rag.chat = ChatConfig(query="joined", prompt_exchanges=1)
        prompt = rag._single_prompts("Where was it played?", row, history)[0]
        assert "User: Who won Super Bowl 50?\nAssistant: Denver Broncos" in prompt and "Paris" not in prompt
        assert rag._concat_prompt("Where was it played?", row, history) == prompt  # one passage: the same prompt
        rag.chat = ChatConfig(query="joined", prompt_exchanges=0)
        assert "Conversation so far" not in rag._single_prompts("Where was it played?", row, history)[0]
        trimmed = rag.chat_turn(history, "Where was it played?").usage["prompt_tokens"]
        assert "Paris" in rag.retriever.queries[-1]  # the query is still built from the whole conversation
        rag.chat = ChatConfig(query="joined")
        assert "Paris" in rag._single_prompts("Where was it played?", row, history)[0]  # None: every exchange
        assert rag.chat_turn(history, "Where was it played?").usage["prompt_tokens"] > trimmed  # the answer read less
    finally:
        rag.chat = before


def test_bad_mode_is_a_ragtune_error(rag: RAG):
    with pytest.raises(RagtuneError, match="rag-sequence"):
        rag.ask(Q[0], mode="fusion")
    with pytest.raises(RagtuneError, match="greedy or beam"):
        rag.ask(Q[0], mode="rag-token", decoding="sample")


def test_beam_search_beats_greedy_on_toy_table():
    """Tokens: 0 = a, 1 = b, 2 = eos. Greedy takes a (0.6) then must spread 0.35/0.35/0.3; b (0.4) then eos (0.9)
    wins: 0.36 > max(0.6 * 0.3, 0.6 * 0.35 * ...)."""
    table = {(): [0.6, 0.4, 0.0], (0,): [0.35, 0.35, 0.3], (1,): [0.05, 0.05, 0.9]}

    def make_step(rows: int):
        state: dict[str, list] = {}

        def step(tokens, origin):
            if tokens is None:
                state["seqs"] = [()] * rows
            else:
                state["seqs"] = [state["seqs"][o] + (t,) for o, t in zip(origin.tolist(), tokens.tolist())]
            return torch.tensor([table.get(s, [0.1, 0.1, 0.8]) for s in state["seqs"]]).clamp_min(1e-12).log()

        return step

    greedy = beam_search(make_step(1), 1, num_beams=1, max_new_tokens=4, eos_token_ids=[2], length_penalty=0.0)[0][0]
    assert greedy.tokens[0] == 0
    best = beam_search(make_step(2), 1, num_beams=2, max_new_tokens=4, eos_token_ids=[2], length_penalty=0.0, num_return=2)[0]
    assert best[0].tokens == [1, 2] and best[0].logprob == pytest.approx(math.log(0.36))
    assert best[0].logprob > greedy.logprob
    assert best[0].score >= best[1].score


def test_beam_search_min_new_tokens():
    """Tokens: 0 = a, 1 = b, 2 = eos. With b eos (0.4 * 0.9) and a eos (0.6 * 0.35) held back for two tokens,
    a a eos = 0.6 * 0.35 * 0.8 = 0.168 beats a b eos (0.144) and b ? eos (0.016)."""
    table = {(): [0.6, 0.4, 0.0], (0,): [0.35, 0.3, 0.35], (1,): [0.05, 0.05, 0.9]}
    seqs: list = []

    def step(tokens, origin):
        seqs[:] = [()] * 2 if tokens is None else [seqs[o] + (t,) for o, t in zip(origin.tolist(), tokens.tolist())]
        return torch.tensor([table.get(s, [0.1, 0.1, 0.8]) for s in seqs]).clamp_min(1e-12).log()

    best = beam_search(step, 1, num_beams=2, max_new_tokens=4, eos_token_ids=[2], length_penalty=0.0, min_new_tokens=2)[0][0]
    assert best.tokens == [0, 0, 2] and best.logprob == pytest.approx(math.log(0.6 * 0.35 * 0.8))


def test_beam_search_batches_rows_independently():
    def step(tokens, origin):
        # row b prefers token b, then eos
        n = 2 if tokens is None else tokens.shape[0]
        out = torch.full((n * 1, 3), 0.1).log()
        for r in range(n):
            b = r // 1
            out[r, b] = math.log(0.7) if tokens is None else math.log(0.1)
            if tokens is not None:
                out[r, 2] = math.log(0.8)
        return out

    res = beam_search(step, 2, num_beams=1, max_new_tokens=3, eos_token_ids=[2])
    assert res[0][0].tokens == [0, 2] and res[1][0].tokens == [1, 2]


def test_usage_counts_the_prompt_tokens_each_mode_reads(rag: RAG):
    rows = rag.retrieve(Q[:1], 3).passages(rag.store)
    enc = rag.generator.encode_prompts
    concat = rag.ask(Q[0], mode="concat")
    assert concat.usage["prompt_tokens"] == len(enc([rag._concat_prompt(Q[0], rows[0])])[0])
    seq = rag.ask(Q[0], mode="rag-sequence")
    # one prompt per passage: each is read
    assert seq.usage["prompt_tokens"] == sum(len(ids) for ids in enc(rag._single_prompts(Q[0], rows[0])))
    assert seq.usage["prompt_tokens"] > concat.usage["prompt_tokens"]


def test_without_weak_knowledge_empties_only_the_weak_rows_it_may():
    from ragtune.rag.history import without_weak_knowledge
    from ragtune.retrieval.base import Hits

    hits = Hits(np.array([[4, 5], [6, -1], [-1, -1]]), np.array([[0.9, 0.2], [0.3, -np.inf], [-np.inf, -np.inf]], dtype=np.float32))
    out = without_weak_knowledge(hits, 0.5, rows=np.array([True, True, False]))
    # row 0's best (0.9) reaches 0.5 and stays; row 1's best (0.3) does not; row 2 is not a chat turn
    assert out.ids.tolist() == [[4, 5], [-1, -1], [-1, -1]] and out.scores[1].tolist() == [-np.inf, -np.inf]
