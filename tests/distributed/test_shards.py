"""A sharded index answers exactly as the single index: same ids, same scores (bm25, tfidf, dense)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ragtune.distributed.shards import ShardedRetriever, merge_topk, shard_path
from ragtune.retrieval.base import EMPTY_ID
from ragtune.retrieval.index import Index


def test_merge_topk_by_hand():
    a = (np.array([[5, 3, -1], [7, 1, 2]]), np.array([[0.9, 0.5, -np.inf], [0.4, 0.4, 0.1]], np.float32))
    b = (np.array([[4, 8], [6, -1]]), np.array([[0.9, 0.7], [0.4, -np.inf]], np.float32))
    ids, scores = merge_topk([a, b], 4)
    # ties (0.9: ids 4 and 5; 0.4: ids 1, 6, 7) break by the smaller id; empty slots last
    assert ids.tolist() == [[4, 5, 8, 3], [1, 6, 7, 2]]
    np.testing.assert_allclose(scores, [[0.9, 0.9, 0.7, 0.5], [0.4, 0.4, 0.4, 0.1]], rtol=1e-6)
    ids, scores = merge_topk([a, b], 6)
    assert ids[0].tolist() == [4, 5, 8, 3, EMPTY_ID, EMPTY_ID] and np.isneginf(scores[0, 4:]).all()


def test_sharded_layout_and_manifest(indexes):
    manifest = json.loads((indexes[2] / "manifest.json").read_text())
    assert manifest["shards"]["count"] == 2 and sum(manifest["shards"]["passages"]) == manifest["counts"]["passages"]
    for kind in ("bm25", "tfidf", "dense"):
        assert not (indexes[2] / kind).exists()
        assert (shard_path(indexes[2], 0) / kind).is_dir() and (shard_path(indexes[2], 1) / kind).is_dir()
    assert "shards" not in json.loads((indexes[1] / "manifest.json").read_text())


@pytest.mark.parametrize("kind", ["bm25", "tfidf", "dense"])
@pytest.mark.parametrize("n", [2, 3])
def test_sharded_hits_equal_single(indexes, queries, kind, n):
    with Index.open(indexes[1]) as single, Index.open(indexes[n]) as sharded:
        r = sharded.retriever(kind)
        assert isinstance(r, ShardedRetriever) and len(r.parts) == n
        for k in (1, 5, 10, 1000):
            want, got = single.retriever(kind).search(queries, k), r.search(queries, k)
            assert got.ids.shape == want.ids.shape
            assert (want.ids != EMPTY_ID).sum() >= min(k, 5) * (len(queries) - 1)  # not vacuous: real hits
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_array_equal(got.scores, want.scores)


def test_sharded_dense_vectors_equal_single(indexes, queries):
    with Index.open(indexes[1]) as single, Index.open(indexes[3]) as sharded:
        want = single.retriever("dense").search(queries, 7, return_vectors=True)
        got = sharded.retriever("dense").search(queries, 7, return_vectors=True)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.vectors, want.vectors)
        assert np.abs(got.vectors).sum() > 0


def test_hybrid_over_shards_equals_single(indexes, queries):
    with Index.open(indexes[1]) as single, Index.open(indexes[2]) as sharded:
        want, got = single.retriever("hybrid").search(queries, 10), sharded.retriever("hybrid").search(queries, 10)
        np.testing.assert_array_equal(got.ids, want.ids)


def test_rescore_over_shards_equals_single_and_finds_the_dense_member(indexes, queries):
    from ragtune.rag.trained import dense_part

    with Index.open(indexes[1]) as single, Index.open(indexes[2]) as sharded:
        want = single.retriever("rescore").search(queries, 5, return_vectors=True)
        got = sharded.retriever("rescore").search(queries, 5, return_vectors=True)
        assert (want.ids != EMPTY_ID).sum() >= 5 * (len(queries) - 1)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
        np.testing.assert_allclose(got.offsets, want.offsets, rtol=1e-6)
        # the sharded BM25 has an encoder attribute (None): the trainable part is still the dense shards
        assert dense_part(sharded.retriever("rescore")) is sharded.retriever("dense")


def test_incremental_update_keeps_shards_exact(tmp_path, beir_dir, config, queries, monkeypatch):
    """Adding and changing documents in a sharded index (dense vectors gathered from the shards, sparse segments
    put back together: nothing re-encoded or re-analysed) still equals a single index of the same passages, scores
    included; --shards 1 turns it back into the single format."""
    from ragtune.retrieval import registry
    from ragtune.retrieval.update import update

    extra = tmp_path / "extra"
    extra.mkdir()
    kinds = ["bm25", "tfidf", "dense"]
    one, two = tmp_path / "one", tmp_path / "two"
    for d, n in ((one, None), (two, 2)):
        update(d, beir=[beir_dir], retrievers=kinds, config=config, shards=n)
    create = registry.create

    def no_rebuild(kind, *a, **kw):
        raise AssertionError(f"the {kind} retriever was rebuilt from the store")

    for text in ("apple river stone apple tower tower music", "river cloud cloud signal"):  # added, then changed
        (extra / "a.txt").write_text(text, encoding="utf-8")
        update(one, [extra], beir=[beir_dir], retrievers=kinds, config=config)
        monkeypatch.setattr(registry, "create", no_rebuild)
        update(two, [extra], beir=[beir_dir], retrievers=kinds, config=config)
        monkeypatch.setattr(registry, "create", create)
        with Index.open(one) as a, Index.open(two) as b:
            # the changed file's old passage is gone from the shards too: equal live counts
            assert b.manifest["shards"]["count"] == 2 and len(b.retriever("bm25")) == len(a.retriever("bm25")) == 241
            for kind in kinds:
                single = a.retriever(kind)
                if kind != "dense":
                    single.optimize()  # the shards were cut from one reweighted segment
                want, got = single.search(queries, 10), b.retriever(kind).search(queries, 10)
                np.testing.assert_array_equal(got.ids, want.ids)
                np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    update(two, [extra], beir=[beir_dir], config=config, shards=1)
    assert (two / "bm25").is_dir() and not (two / "shards").exists()
    with Index.open(two) as b, Index.open(one) as a:
        np.testing.assert_array_equal(b.retriever("dense").search(queries, 10).ids, a.retriever("dense").search(queries, 10).ids)


def test_ties_at_the_kth_score_go_to_smaller_ids():
    """Identical passages tie; the single index and the shards both keep the smallest ids at the cut (argpartition
    alone would keep any of them, so a batch and a single query could disagree)."""
    from ragtune.corpus.types import Passage
    from ragtune.distributed.shards import split_retriever
    from ragtune.retrieval.sparse import BM25Retriever

    r = BM25Retriever()
    r.add([Passage(id=i, doc_id=str(i), text="same words here" if i % 2 else "other text entirely") for i in range(40)])
    r.optimize()
    parts = split_retriever(r, 3)
    sharded = ShardedRetriever("bm25", parts, [p.segments[0].n_docs for p in parts])
    for k in (1, 3, 5, 19):
        want = list(range(1, 2 * k, 2))[:k]
        assert r.search(["same words"], k).ids[0].tolist() == want
        assert r.search(["same words", "same words", "same", "words here", "same words"], k).ids[0].tolist() == want
        assert sharded.search(["same words"], k).ids[0].tolist() == want


def test_interrupted_sharded_write_leaves_previous_index(tmp_path, beir_dir, config, queries, monkeypatch):
    """A run killed while writing shards leaves the previous (sharded) index as it was, and no staging copy."""
    from ragtune.distributed import shards as sharding
    from ragtune.retrieval.update import update

    idx = tmp_path / "idx"
    update(idx, beir=[beir_dir], retrievers=["bm25"], config=config, shards=2)
    with Index.open(idx) as i:
        want = i.retriever("bm25").search(queries, 10)
    real = sharding.split_retriever

    def dies_midway(r, count):
        parts = real(r, count)
        yield parts[0]
        raise KeyboardInterrupt

    monkeypatch.setattr(sharding, "split_retriever", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        update(idx, beir=[beir_dir], retrievers=["bm25", "tfidf"], config=config, shards=3)
    assert not list(tmp_path.glob(".idx.staging-*"))
    with Index.open(idx) as i:
        assert i.manifest["shards"]["count"] == 2 and i.kinds == ["bm25"]
        got = i.retriever("bm25").search(queries, 10)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)


def test_dense_ties_at_the_kth_score_go_to_smaller_ids():
    from ragtune.retrieval.dense.vector_index import VectorIndex

    v = np.ones((24, 4), dtype=np.float32)
    v[::3] *= 2  # ids 23, 20, ..., 2 score 2x the others
    ids = np.arange(23, -1, -1)  # inserted from the largest id down: FAISS alone would keep the larger ids
    index = VectorIndex(4)
    index.add(ids, v)
    scores, got = index.search(np.ones((3, 4), np.float32), 10)  # a tie of 16 at the 9th and 10th places
    big = sorted(ids[::3].tolist())
    assert got[0].tolist() == big + sorted(set(range(24)) - set(big))[:2]
    assert (got == got[0]).all()


def test_dense_ties_longer_than_the_margin_still_go_to_smaller_ids():
    """A tie of 100 equal vectors at the k-th place (longer than the extra hits first fetched) widens the fetch."""
    from ragtune.retrieval.dense.vector_index import TIE_MARGIN, VectorIndex

    n = 100
    assert n > 5 + TIE_MARGIN
    index = VectorIndex(4)
    index.add(np.arange(n - 1, -1, -1), np.ones((n, 4), dtype=np.float32))  # largest id first
    scores, got = index.search(np.ones((2, 4), np.float32), 5)
    assert got.tolist() == [[0, 1, 2, 3, 4]] * 2
    np.testing.assert_array_equal(scores, np.full((2, 5), 4.0, np.float32))
