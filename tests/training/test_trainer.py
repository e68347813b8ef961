"""Trainer machinery: exact resume, checkpoints, output layout, schedule, accumulation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ragtune.config import TrainingConfig
from ragtune.errors import RagtuneError
from ragtune.corpus.squad import QARecord
from ragtune.training.checkpoint import load_trainable_state, trainable_state
from ragtune.training.schedule import linear_warmup_decay
from ragtune.training.trainer import Trainer
from tests.training.conftest import make_rag


def _cfg(**kw):
    base = dict(max_steps=6, batch_size=4, lr=1e-3, encoder_lr=1e-3, warmup_ratio=0.3, eval_every=1000, save_every=1000, seed=1)
    return TrainingConfig(**{**base, **kw})


def test_resume_replays_the_uninterrupted_run(small_world, tmp_path):
    w = small_world
    full = Trainer(make_rag(w), w["train"], None, _cfg(), tmp_path / "a", progress=False).train()
    first = Trainer(make_rag(w), w["train"], None, _cfg(), tmp_path / "b", progress=False).train(stop_after=3)
    assert first.steps == 3
    rest = Trainer(make_rag(w), w["train"], None, _cfg(), tmp_path / "b", progress=False).train(resume=True)
    assert rest.steps == 6
    assert first.losses + rest.losses == full.losses  # bit-for-bit: same batches, RNG, optimiser, schedule
    rows = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    peaks = [r["peak_rss_mb"] for r in rows]  # the process's peak so far: which step raised it
    assert all(p > 50 for p in peaks) and peaks == sorted(peaks)  # one process: never falls


def test_resume_without_checkpoint_is_a_clear_error(small_world, tmp_path):
    w = small_world
    with pytest.raises(RagtuneError, match="no checkpoint"):
        Trainer(make_rag(w), w["train"], None, _cfg(), tmp_path / "none", progress=False).train(resume=True)


@pytest.mark.parametrize("best_step", [2, 4])
def test_output_loads_with_from_pretrained_and_keeps_the_best(small_world, tmp_path, best_step):
    from ragtune.rag.model import RAG

    w = small_world
    dev = w["dev"][:6]
    gold = {e.question: e.answers[0] for e in dev}
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def scripted(questions):
        # The dev answers are scripted (all right at ``best_step``, all wrong otherwise), so which evaluation wins
        # is fixed; each call also records the generator's weights at that evaluation.
        step = 2 * (len(snapshots) + 1)
        snapshots[step] = {n: p.detach().clone() for n, p in tr.generator.model.named_parameters()}
        return [gold[q] if step == best_step else "" for q in questions]

    tr = Trainer(make_rag(w), w["train"], dev, _cfg(max_steps=4, eval_every=2), tmp_path / "out",
                 index_dir=w["root"] / "index", progress=False, answer_fn=scripted)
    res = tr.train()
    assert [e["step"] for e in res.evals] == [2, 4] and res.best["step"] == best_step
    assert res.best["em"] == 1.0
    meta = json.loads((tmp_path / "out" / "ragtune.json").read_text())
    assert meta["rag"] == {"mode": "rag-sequence", "k": 3, "doc_temperature": 0.05, "retriever": "dense"}
    loaded = RAG.from_pretrained(tmp_path / "out")
    # the saved generator is the one of the best evaluation, not the last step's
    for n, q in loaded.generator.model.named_parameters():
        assert torch.equal(snapshots[best_step][n], q.detach()), n
    assert any(not torch.equal(snapshots[2][n], snapshots[4][n]) for n in snapshots[2])  # the two really differ
    assert isinstance(loaded.ask("where does x live ?").answer, str)


def test_trainable_state_roundtrip_and_mismatch():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.bias.requires_grad_(False)
    state = trainable_state({"m": a})
    load_trainable_state({"m": a}, state)
    with pytest.raises(ValueError, match="does not match"):
        load_trainable_state({"m": b}, state)


def test_lora_trains_only_adapters_and_saves_an_adapter(small_world, tmp_path):
    from ragtune.rag.model import RAG

    w = small_world
    rag = make_rag(w)
    base = {n: p.detach().clone() for n, p in rag.generator.model.named_parameters()}
    tr = Trainer(rag, w["train"], None, _cfg(max_steps=2, lora=True, lora_r=4, train_query_encoder=False), tmp_path / "lora",
                 index_dir=w["root"] / "index", progress=False)
    adapters = {n: p.detach().clone() for n, p in tr.modules["generator"].named_parameters() if p.requires_grad}
    tr.train()
    assert adapters and all("lora_" in n for n in adapters)
    trained = dict(tr.modules["generator"].named_parameters())
    assert any(not torch.equal(trained[n].detach(), a) for n, a in adapters.items())  # the adapters moved
    # every base weight is untouched: PEFT names it base_model.model.<name>, with .base_layer inside adapted layers
    frozen = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p for n, p in trained.items() if "lora_" not in n}
    assert set(frozen) == set(base)
    for n, p in frozen.items():
        assert torch.equal(p.detach(), base[n]), n
    assert (tmp_path / "lora" / "generator" / "adapter_config.json").exists()
    assert "encoder" not in tr.modules
    loaded = RAG.from_pretrained(tmp_path / "lora")
    for n, p in loaded.generator.model.named_parameters():
        assert torch.equal(p.detach(), trained[n].detach()), n  # the saved adapter is the trained one
    assert isinstance(loaded.ask("where does x live ?").answer, str)


def test_schedule_and_accumulation(small_world, tmp_path):
    f = linear_warmup_decay(2, 10, delay=4)
    assert [round(f(s), 3) for s in range(11)] == [0, 0, 0, 0, 0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    w = small_world
    # batch 4 x accumulation 2 sees the same examples as batch 8: the mean loss (no dropout differences at
    # step 1 for the frozen-encoder generator-only case) must agree.
    one = Trainer(make_rag(w), w["train"], None, _cfg(max_steps=1, batch_size=8, train_query_encoder=False), tmp_path / "x",
                  progress=False)
    two = Trainer(make_rag(w), w["train"], None, _cfg(max_steps=1, batch_size=4, grad_accum=2, train_query_encoder=False),
                  tmp_path / "y", progress=False)
    assert sorted(e.question for b in one.step_examples(0) for e in b) == sorted(e.question for b in two.step_examples(0) for e in b)
    assert one.train().losses[0] == pytest.approx(two.train().losses[0], rel=1e-5)


def test_time_budget_stops_like_a_last_step(small_world, tmp_path):
    w = small_world
    res = Trainer(make_rag(w), w["train"], w["dev"][:4], _cfg(max_steps=50, eval_every=1000), tmp_path / "t",
                  progress=False).train(max_seconds=0.0)
    assert res.steps == 1  # the clock is checked after each step, so one step always runs
    assert [e["step"] for e in res.evals] == [1]  # evaluated and saved as if it were the last step
    assert (tmp_path / "t" / "ragtune.json").exists() and (tmp_path / "t" / "checkpoint").is_dir()


@pytest.mark.parametrize("mode", ["rag-sequence", "rag-token"])
def test_label_smoothing_and_length_normalisation_reach_the_loss(small_world, tmp_path, monkeypatch, mode):
    import ragtune.training.objectives as objectives_mod
    from ragtune.training import losses

    w = small_world
    seen = {}
    real = losses.rag_sequence_nll if mode == "rag-sequence" else losses.rag_token_nll

    def spy(doc_logp, tok_logp, mask, **kw):
        seen.update(doc_logp=doc_logp, tok_logp=tok_logp, mask=mask, **kw)
        return real(doc_logp, tok_logp, mask, **kw)

    monkeypatch.setattr(objectives_mod, "rag_sequence_nll" if mode == "rag-sequence" else "rag_token_nll", spy)
    t = Trainer(make_rag(w), w["train"], None, _cfg(label_smoothing=0.2, length_normalize=True), tmp_path, progress=False)
    with torch.no_grad():
        got, n = t.batch_loss(w["train"][:3], mode=mode)
    doc, gold, mean, mask = seen["doc_logp"], seen["tok_logp"], seen["smooth_logp"], seen["mask"]
    assert n == 3 and seen["label_smoothing"] == 0.2 and seen["length_normalize"] is True
    assert mean.shape == gold.shape
    V = t.generator.model.get_output_embeddings().weight.shape[0]
    assert bool((mean[..., :1] <= -math.log(V) + 1e-5).all())  # Jensen: mean_v log p_v <= log mean_v p_v = -log V
    expect = ((0.8 * real(doc, gold, mask, reduction="none") + 0.2 * real(doc, mean, mask, reduction="none"))
              / mask.sum(-1)).sum()
    assert float(got) == pytest.approx(float(expect), rel=1e-6)
    assert float(got) != pytest.approx(float(real(doc, gold, mask, reduction="sum")), rel=1e-2)


def _passage_texts(store):
    ps = [p for batch in store.iter_passages() for p in batch]
    return np.array([p.id for p in ps], dtype=np.int64), [p.indexed_text for p in ps]


def test_doc_encoder_alone_trains_a_copy_reencodes_and_saves_its_index(small_world, tmp_path):
    from ragtune.rag.model import RAG

    w = small_world
    rag = make_rag(w)
    query_before = {n: p.detach().clone() for n, p in rag.retriever.encoder.model.state_dict().items()}
    tr = Trainer(rag, w["train"], None, _cfg(max_steps=4, train_query_encoder=False, train_doc_encoder=True, reindex_every=2),
                 tmp_path / "d", index_dir=w["root"] / "index", progress=False)
    tr.train()
    assert tr.doc_encoder is not tr.encoder and set(tr.modules) == {"generator", "doc_encoder"}
    for n, p in tr.encoder.model.state_dict().items():
        assert torch.equal(p, query_before[n]), n  # the query side stayed frozen
    assert any(not torch.equal(p, query_before[n]) for n, p in tr.doc_encoder.model.state_dict().items())
    ids, texts = _passage_texts(rag.store)
    fresh = tr.doc_encoder.encode_passages(texts)
    # re-encoded at step 4 (the last): the live index holds the final document encoder's vectors
    np.testing.assert_allclose(rag.retriever.passage_vectors(ids), fresh, atol=1e-5)
    loaded = RAG.from_pretrained(tmp_path / "d")
    np.testing.assert_allclose(loaded.retriever.passage_vectors(ids), fresh, atol=1e-5)
    untouched = make_rag(w).retriever.passage_vectors(ids)
    assert not np.allclose(untouched, fresh, atol=1e-4)  # the index on disk is not what the model uses


def test_resume_with_a_training_doc_encoder_restores_the_live_index(small_world, tmp_path):
    w = small_world
    cfg = _cfg(train_doc_encoder=True, reindex_every=2)  # re-encoded at steps 2, 4, 6; the stop at 3 is between
    full = Trainer(make_rag(w), w["train"], None, cfg, tmp_path / "a", progress=False).train()
    first = Trainer(make_rag(w), w["train"], None, cfg, tmp_path / "b", progress=False).train(stop_after=3)
    rest = Trainer(make_rag(w), w["train"], None, cfg, tmp_path / "b", progress=False).train(resume=True)
    assert first.losses + rest.losses == full.losses


def test_retriever_only_objectives_check_their_inputs(small_world, tmp_path):
    w = small_world
    with pytest.raises(RagtuneError, match="BM25"):
        Trainer(make_rag(w), w["train"], None, _cfg(objective="contrastive"), tmp_path, progress=False)
    bare = [QARecord(e.question, e.answers) for e in w["train"]]
    with pytest.raises(RagtuneError, match="no positive_ids or positive_texts"):
        Trainer(make_rag(w), bare, None, _cfg(objective="contrastive", hard_negatives=0), tmp_path, progress=False)
    with pytest.raises(RagtuneError, match="both encoders are frozen"):
        Trainer(make_rag(w), w["train"], None, _cfg(objective="lm-supervised", train_query_encoder=False), tmp_path,
                progress=False)


def test_retriever_only_output_names_the_untouched_generator(small_world, tmp_path):
    from ragtune.rag.model import RAG

    w = small_world
    rag = make_rag(w)
    tr = Trainer(rag, w["train"], w["dev"][:6], _cfg(objective="contrastive", hard_negatives=0, max_steps=2, eval_every=1),
                 tmp_path / "c", index_dir=w["root"] / "index", progress=False)
    res = tr.train()
    assert set(res.best) == {"step", "recall@1", "recall@5"}
    assert not list((tmp_path / "c" / "generator").glob("*.safetensors"))  # no weights copied
    tr.save_model(tmp_path / "final")  # the best step may be 1; this is the state after step 2
    loaded = RAG.from_pretrained(tmp_path / "final")
    assert loaded.generator.model_name == str(w["lm"].resolve())
    q = ["where does x live ?"]
    np.testing.assert_allclose(loaded.retriever.encoder.encode_queries(q), tr.encoder.encode_queries(q), atol=1e-6)
    assert isinstance(loaded.ask(q[0]).answer, str)


def test_saved_index_does_not_lag_the_doc_encoder(small_world, tmp_path):
    from ragtune.rag.model import RAG

    w = small_world
    rag = make_rag(w)
    tr = Trainer(rag, w["train"], None, _cfg(max_steps=3, train_doc_encoder=True, reindex_every=2), tmp_path / "lag",
                 index_dir=w["root"] / "index", progress=False)
    tr.train()  # re-encoded at step 2, then one more step: the live index lags
    ids, texts = _passage_texts(rag.store)
    fresh = tr.doc_encoder.encode_passages(texts)
    assert not np.allclose(rag.retriever.passage_vectors(ids), fresh, atol=1e-4)
    np.testing.assert_allclose(RAG.from_pretrained(tmp_path / "lag").retriever.passage_vectors(ids), fresh, atol=1e-5)


def test_building_a_trainer_reads_no_environment_and_seeds_nothing(small_world, tmp_path, monkeypatch):
    w = small_world
    rag = make_rag(w)
    rag.generator.model, rag.retriever.encoder.model  # noqa: B018 - load first: loading is not the Trainer's doing
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun: still one process unless the caller says otherwise
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    tr = Trainer(rag, w["train"], None, _cfg(), tmp_path, progress=False)
    assert tr.info.world_size == 1 and tr.info.is_main
    assert torch.equal(torch.get_rng_state(), torch_state) and (np.random.get_state()[1] == np_state).all()
