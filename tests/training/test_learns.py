"""Proof that fine-tuning learns: on an invented knowledge base, tiny random-init models trained with the
RAG-Sequence marginal likelihood go from EM ~0 to >= 0.8 on *held-out entities*, and the query encoder's
Recall@1 rises well above its untrained value, while with the query encoder frozen it does not move at all.

The task (``synthetic.py``): 60 entities, each with one passage "NAME lives in CITY ." and three question
templates; the last 15 entities are dev only, so the generator cannot memorise their answers: dev EM can only
come from retrieving the right passage and copying the city out of it. Word-level tokenizers make names and
cities single tokens, which keeps the models tiny and every step cheap (~20 s for the whole module on 1 core).

Phases, in order:
1. untrained: EM 0, Recall@1 whatever a random encoder gives (~0.3).
2. reader warm-up: the generator alone learns to copy from the *gold* passage (150 steps; the retriever is not
   involved, so Recall@1 is still the untrained value). This stands in for starting from a pretrained LM, as RAG
   starts from BART: a random generator gives the retriever pure noise, since P(y|q,z) does not yet depend on z.
   EM is now bounded by Recall@1.
3. end-to-end RAG-Sequence (100 steps): -log sum_z p(z|q) P(y|q,z) with p(z|q) from f(q,z) = E_q(q) . d_z on
   the retrieved passages' frozen index vectors. The only gradient the query encoder gets is this one, so the
   Recall@1 rise is the RAG loss's doing; EM follows it.

The retriever-only objectives start from the same points: LM-supervised retrieval learns from the warmed-up
reader's preference over the top k (the reader stays frozen), the contrastive objective from the positives
and BM25 hard negatives (the generator is never loaded).
"""
from __future__ import annotations

import random

import pytest
import torch

from ragtune.config import Config, TrainingConfig
from ragtune.corpus.types import Passage
from ragtune.training.trainer import Trainer
from tests.training.synthetic import PROMPT, make_kb, word_encoder_dir, word_lm_dir, write_corpus

N_ENTITIES, N_CITIES, HELD_OUT, K = 60, 30, 15, 4
WARM_UP_STEPS, RAG_STEPS, BATCH = 150, 100, 16


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ragtune.retrieval.update import update

    # Tiny models run fastest on one thread, and the suite may share the machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("learns")
    kb = make_kb(N_ENTITIES, N_CITIES)
    enc = word_encoder_dir(root / "enc", kb.texts(), hidden=64, layers=1)
    lm = word_lm_dir(root / "lm", kb.texts(), hidden=64, layers=2)
    write_corpus(kb, root / "corpus" / "kb.jsonl")
    cfg = Config().updated(
        corpus={"chunk_words": 0}, dense={"encoder": str(enc)},
        generator={"model": str(lm), "prompt_template": PROMPT, "max_new_tokens": 2},
        rag={"mode": "rag-sequence", "k": K, "doc_temperature": 0.05, "retriever": "dense"},
    )
    update(root / "index", [root / "corpus"], retrievers=["dense", "bm25"], config=cfg)
    w = {"root": root, "kb": kb, "cfg": cfg, "train": kb.rows("train", HELD_OUT), "dev": kb.rows("dev", HELD_OUT)}
    rag = _rag(w)
    w["untrained"] = _trainer(rag, w, root / "untrained").evaluate()
    _warm_up_reader(rag.generator, w["train"])
    w["reader_state"] = {k: v.clone() for k, v in rag.generator.model.state_dict().items()}
    w["reader_only"] = _trainer(rag, w, root / "reader").evaluate()
    yield w
    torch.set_num_threads(threads)


def _rag(world):
    from ragtune.rag.model import RAG

    return RAG.from_index(world["root"] / "index", retriever="dense", config=world["cfg"])


def _top1_answers(rag):
    """Greedy answers from the top-1 passage: RAG-Sequence's fast decoding with one passage (RAG.ask_batch's
    thorough decoding scores every passage, which costs k times more and answers the same here)."""

    def answer(questions):
        hits = rag.retriever.search(questions, 1)
        rows = hits.passages(rag.store)
        prompts = [rag.generator.build_prompt(q, [r[0]] if r[0] is not None else []) for q, r in zip(questions, rows)]
        return [g.text for g in rag.generator.generate(prompts)]

    return answer


def _trainer(rag, world, out, **kw):
    base = dict(mode="rag-sequence", max_steps=RAG_STEPS, batch_size=BATCH, lr=1e-3, encoder_lr=1e-3, warmup_ratio=0.05,
                eval_every=1000, save_every=1000, seed=0)
    return Trainer(rag, world["train"], world["dev"], TrainingConfig(**{**base, **kw}), out, progress=False,
                   answer_fn=_top1_answers(rag))


def _warm_up_reader(generator, rows, steps=WARM_UP_STEPS, lr=3e-3, seed=0):
    """Teach the generator to answer from the gold passage (generator only; the retriever is not involved)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(generator.model.parameters(), lr=lr)
    generator.model.train()
    for _ in range(steps):
        batch = rng.sample(rows, BATCH)
        prompts = [generator.build_prompt(e.question, [Passage(0, "", e.positive_texts[0])]) for e in batch]
        logp, mask = generator.token_logprobs(prompts, [e.answers[0] for e in batch])
        loss = -(logp * mask).sum() / len(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    generator.model.eval()


def test_end_to_end_training_raises_em_and_recall(world, tmp_path):
    untrained, reader_only = world["untrained"], world["reader_only"]
    assert untrained["em"] <= 0.05
    assert reader_only["recall@1"] == untrained["recall@1"]  # the warm-up never touched the retriever
    assert untrained["recall@1"] <= 0.6  # a random encoder: room to rise
    assert reader_only["em"] <= untrained["recall@1"] + 0.1  # the reader alone is capped by retrieval
    rag = _rag(world)
    rag.generator.model.load_state_dict(world["reader_state"])
    result = _trainer(rag, world, tmp_path / "out").train()
    after = result.evals[-1]
    print(f"untrained {untrained}\nreader only {reader_only}\nafter RAG-Sequence {after} ({result.seconds:.1f} s)")
    assert result.losses[-1] < 0.25 * result.losses[0]
    assert after["em"] >= 0.8
    assert after["recall@1"] >= untrained["recall@1"] + 0.3
    assert (tmp_path / "out" / "ragtune.json").exists()


def test_frozen_query_encoder_leaves_recall_unchanged(world, tmp_path):
    untrained = world["untrained"]
    rag = _rag(world)
    rag.generator.model.load_state_dict(world["reader_state"])
    result = _trainer(rag, world, tmp_path / "out", max_steps=30, train_query_encoder=False).train()
    after = result.evals[-1]
    # exactly: nothing the query vectors depend on may change
    assert after["recall@1"] == untrained["recall@1"]
    assert after["recall@5"] == untrained["recall@5"]
    assert after["em"] <= untrained["recall@1"] + 0.1  # and without better retrieval EM stays capped


def test_lm_supervised_retriever_training_follows_the_frozen_reader(world, tmp_path):
    untrained = world["untrained"]
    rag = _rag(world)
    rag.generator.model.load_state_dict(world["reader_state"])
    result = _trainer(rag, world, tmp_path / "out", objective="lm-supervised", max_steps=60).train()
    after = result.evals[-1]
    print(f"untrained {untrained}\nafter LM-supervised {after} ({result.seconds:.1f} s)")
    assert "em" not in after  # the retriever-only objectives do not generate
    assert after["recall@1"] >= untrained["recall@1"] + 0.3
    for n, p in rag.generator.model.state_dict().items():
        assert torch.equal(p, world["reader_state"][n]), n  # the judge is frozen


def test_contrastive_retriever_training_with_bm25_hard_negatives(world, tmp_path):
    from ragtune.retrieval.index import Index

    untrained = world["untrained"]
    rag = _rag(world)
    bm25 = Index.open(world["root"] / "index").retriever("bm25")
    cfg = TrainingConfig(objective="contrastive", hard_negatives=2, max_steps=60, batch_size=BATCH, encoder_lr=1e-3,
                         warmup_ratio=0.05, eval_every=1000, save_every=1000, seed=0)
    tr = Trainer(rag, world["train"], world["dev"], cfg, tmp_path / "out", progress=False, negatives=bm25)
    result = tr.train()
    after = result.evals[-1]
    print(f"untrained {untrained}\nafter contrastive {after} ({result.seconds:.1f} s)")
    assert after["recall@1"] >= untrained["recall@1"] + 0.3
    assert rag.generator._model is None  # never loaded
    assert result.losses[-1] < 0.5 * result.losses[0]
