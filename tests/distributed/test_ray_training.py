"""Training against shard actors: query vectors from the caller, passage vectors from the actors, and the
document side re-encoded on the actors and swapped in, as a single-process re-encode would."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ragtune.retrieval.index import Index

pytest.importorskip("ray")


def test_reencode_on_actors_matches_single(indexes, queries, ray_local, monkeypatch):
    from ragtune.distributed.ray_shards import RayShardedRetriever

    with Index.open(indexes[1]) as single, Index.open(indexes[2]) as sharded:
        local = single.retriever("dense")
        remote = RayShardedRetriever.open(sharded, "dense", "local")
        before = remote.search(queries, 5).ids
        # a "trained" document encoder: the same model with perturbed weights
        torch.manual_seed(0)
        with torch.no_grad():
            for p in local.encoder.model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        local.reencode([p for batch in single.store.iter_passages() for p in batch], encoder=local.encoder)
        remote.encoder = local.encoder  # the trainer's encoder (query side tied)
        remote.reencode(encoder=local.encoder)
        want, got = local.search(queries, 5), remote.search(queries, 5, return_vectors=True)
        assert not np.array_equal(before, want.ids)  # the perturbation changed the ranking: not vacuous
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        np.testing.assert_allclose(got.vectors, local.passage_vectors(want.ids), atol=1e-5)
        # the whole live index comes back from the actors (checkpoints), and goes back on resume
        whole = remote.index
        assert len(whole) == len(local)
        remote.index = single.retriever("dense").index
        np.testing.assert_array_equal(remote.search(queries, 5).ids, want.ids)


from tests.training.conftest import small_world  # noqa: E402,F401  (the trainer tests' synthetic world)


def test_fine_tune_through_shard_actors_equals_in_process(small_world, tmp_path, ray_local, monkeypatch):  # noqa: F811
    """`ragtune train --ray`: the trainer's retriever is the shard actors; with the document encoder training, the
    index is re-encoded on the actors; the losses equal an in-process run over the same shards."""
    import shutil

    from ragtune.distributed.ray_shards import RayShardedRetriever
    from ragtune.retrieval.update import update
    from ragtune.training.run import fine_tune
    from ragtune.training.data import write_examples

    w = small_world
    idx = tmp_path / "index"
    shutil.copytree(w["root"] / "index", idx)
    update(idx, config=w["cfg"], shards=2)
    rows = tmp_path / "train.jsonl"
    write_examples(w["train"][:8], rows)
    cfg = w["cfg"].updated(training={"max_steps": 2, "batch_size": 4, "seed": 3, "train_doc_encoder": True,
                                     "reindex_every": 1, "lora": False, "train_generator": False})
    _, plain = fine_tune(idx, rows, tmp_path / "plain", config=cfg, progress=False)
    monkeypatch.setenv("RAGTUNE_RAY", "local")
    trainer, remote = fine_tune(idx, rows, tmp_path / "ray", config=cfg, progress=False)
    assert isinstance(trainer.retriever, RayShardedRetriever)
    assert remote.steps == plain.steps == 2
    np.testing.assert_allclose(remote.losses, plain.losses, rtol=1e-4)
    assert (tmp_path / "ray" / "dense_index").is_dir()
