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
