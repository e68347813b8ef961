"""fine_tune (what `ragtune train` calls) and training_overrides, without the command line."""
from __future__ import annotations

import json

import pytest

from ragtune.errors import RagtuneError
from ragtune.training.data import write_examples
from ragtune.training.run import fine_tune, training_overrides


def test_training_overrides():
    assert training_overrides() == {"mode": None, "lora": None, "max_steps": None, "objective": None, "hard_negatives": None}
    got = training_overrides(mode="rag-token", lora=True, freeze=["generator", "doc-encoder"], max_steps=3)
    assert got["mode"] == "rag-token" and got["lora"] is True and got["max_steps"] == 3
    assert got["train_generator"] is False and got["train_doc_encoder"] is False and "train_query_encoder" not in got
    with pytest.raises(RagtuneError, match="cannot freeze 'retriever'"):
        training_overrides(freeze=["retriever"])


def test_fine_tune_assembles_data_rag_and_trainer(small_world, tmp_path):
    w = small_world
    rows = tmp_path / "train.jsonl"
    write_examples(w["train"][:20], rows)
    with open(rows, "a") as f:
        f.write('{"question": "an id the index lacks", "answers": ["x"], "positive_ids": [99999]}\n')
    cfg = w["cfg"].updated(training={"max_steps": 2, "batch_size": 4, "eval_every": 2, "seed": 3})
    trainer, result = fine_tune(w["root"] / "index", rows, tmp_path / "out", dev_fraction=0.25, config=cfg, progress=False)
    assert len(trainer.train_rows) == 15 and len(trainer.dev_rows) == 5  # the bad row skipped, then a 25 % split
    assert trainer.rag.k == 3 and trainer.rag.doc_temperature == 0.05 and trainer.rag.mode == "rag-sequence"
    assert result.steps == 2 and [e["step"] for e in result.evals] == [2]
    meta = json.loads((tmp_path / "out" / "ragtune.json").read_text())
    assert meta["rag"]["retriever"] == "dense" and meta["index"] == str((w["root"] / "index").resolve())
    with pytest.raises(RagtuneError, match="line 21"):
        fine_tune(w["root"] / "index", rows, tmp_path / "o2", config=cfg, strict=True, progress=False)
    with pytest.raises(RagtuneError, match="--freeze query-encoder"):
        fine_tune(w["root"] / "index", rows, tmp_path / "o3", config=cfg, retriever="bm25", progress=False)


def test_fine_tune_over_bm25_trains_the_generator_alone(small_world, tmp_path):
    """The generator trained over BM25's passages (the query encoder frozen: BM25 has none); the output answers
    with BM25 again and keeps no query encoder of its own."""
    from ragtune.rag.model import RAG
    from ragtune.retrieval.update import update

    w = small_world
    cfg = w["cfg"].updated(training={"max_steps": 1, "batch_size": 4, "eval_every": 10, "seed": 3,
                                     "train_query_encoder": False})
    update(tmp_path / "index", [w["root"] / "corpus"], retrievers=["bm25"], config=cfg)
    rows = tmp_path / "train.jsonl"
    write_examples(w["train"][:8], rows)
    trainer, result = fine_tune(tmp_path / "index", rows, tmp_path / "out", dev_fraction=0.0, config=cfg,
                                retriever="bm25", progress=False)
    assert result.steps == 1 and trainer.encoder is None and trainer.rag.retriever_kind == "bm25"
    meta = json.loads((tmp_path / "out" / "ragtune.json").read_text())
    assert meta["rag"]["retriever"] == "bm25"
    assert not (tmp_path / "out" / "query_encoder").exists()
    assert RAG.from_pretrained(tmp_path / "out").retriever_kind == "bm25"


@pytest.fixture(scope="module")
def two_retriever_index(small_world, tmp_path_factory):
    """The small world's corpus indexed by BM25 and the tiny dense encoder (what `rescore` and `hybrid` combine)."""
    from ragtune.retrieval.update import update

    path = tmp_path_factory.mktemp("bm25_dense") / "index"
    update(path, [small_world["root"] / "corpus"], retrievers=["bm25", "dense"], config=small_world["cfg"])
    return path


def test_fine_tune_over_rescore_trains_the_query_encoder_through_the_sparse_candidates(small_world, two_retriever_index, tmp_path):
    """RAG over BM25's candidates rescored by E(q).d + w * bm25: the query encoder trains through that score, the
    trainer's f(q, z) is the retriever's score (sparse term included), and the output answers with the same
    retriever and the trained encoder."""
    import torch

    from ragtune.rag.model import RAG
    from ragtune.retrieval.rescore import RescoringRetriever

    w = small_world
    cfg = w["cfg"].updated(training={"max_steps": 2, "batch_size": 4, "eval_every": 10, "seed": 3, "encoder_lr": 1e-2},
                           hybrid={"sparse_weight": 0.3, "depth": 8})
    rows = tmp_path / "train.jsonl"
    write_examples(w["train"][:8], rows)
    trainer, result = fine_tune(two_retriever_index, rows, tmp_path / "out", dev_fraction=0.0, config=cfg,
                                retriever="rescore", progress=False)
    r = trainer.rag.retriever
    assert result.steps == 2 and isinstance(r, RescoringRetriever) and trainer.encoder is r.retrievers[1].encoder
    before = RAG.from_index(two_retriever_index, retriever="dense", config=cfg).retriever.encoder.model.state_dict()
    after = trainer.encoder.model.state_dict()
    assert any(not torch.equal(before[n], after[n]) for n in before)

    for m in trainer.encoder.model.modules():  # no dropout: the training pass then scores as the search did
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    questions = [e.question for e in w["train"][:3]]
    hits = r.search(questions, 3, return_vectors=True)
    assert hits.offsets is not None and (hits.offsets > 0).any()  # BM25 matched: the sparse term is in f
    with torch.no_grad():
        f = trainer.objective.doc_scores(questions, hits, hits.passages(trainer.rag.store))
    valid = torch.from_numpy(hits.ids >= 0)  # empty slots (BM25 matched fewer) are masked out of the prior
    assert valid.sum() >= 3
    torch.testing.assert_close(f[valid], torch.from_numpy(hits.scores)[valid], rtol=1e-4, atol=1e-5)

    meta = json.loads((tmp_path / "out" / "ragtune.json").read_text())
    assert meta["rag"]["retriever"] == "rescore" and (tmp_path / "out" / "query_encoder").is_dir()
    assert meta["hybrid"] == {"sparse_weight": 0.3, "depth": 8}
    loaded = RAG.from_pretrained(tmp_path / "out")  # the index's own [hybrid] has the defaults (0.1, 100)
    assert isinstance(loaded.retriever, RescoringRetriever)
    assert (loaded.retriever.sparse_weight, loaded.retriever.depth) == (0.3, 8)
    got = loaded.retriever.retrievers[1].encoder.model.state_dict()
    assert all(torch.equal(got[n], after[n].to(got[n].device)) for n in after)


def test_rank_fusion_cannot_train_the_query_encoder_through_the_prior(small_world, two_retriever_index, tmp_path):
    from ragtune.rag.model import RAG
    from ragtune.training.trainer import Trainer

    cfg = small_world["cfg"].updated(training={"max_steps": 1, "batch_size": 4})
    rag = RAG.from_index(two_retriever_index, retriever="hybrid", config=cfg)
    with pytest.raises(RagtuneError, match="rank fusion hides"):
        Trainer(rag, small_world["train"][:4], None, cfg.training, tmp_path / "out", progress=False)
