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
