import numpy as np
import pytest

from ragtune.retrieval.base import EMPTY_ID
from ragtune.retrieval.dense.vector_index import VectorIndex


def _data(n=500, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.arange(1000, 1000 + n, dtype=np.int64)


def test_flat_equals_brute_force_topk():
    x, ids = _data()
    q = np.random.default_rng(1).standard_normal((7, 16)).astype(np.float32)
    index = VectorIndex(16)
    index.add(ids, x)
    scores, got = index.search(q, 10)
    brute = q @ x.T
    order = np.argsort(-brute, axis=1)[:, :10]
    np.testing.assert_array_equal(got, ids[order])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, order, axis=1), rtol=1e-5, atol=1e-5)
    assert scores.dtype == np.float32 and got.dtype == np.int64


def test_k_larger_than_index_pads_with_empty():
    x, ids = _data(3)
    index = VectorIndex(16)
    index.add(ids, x)
    scores, got = index.search(x[:1], 5)
    assert list(got[0, 3:]) == [EMPTY_ID, EMPTY_ID] and np.isneginf(scores[0, 3:]).all()
    empty = VectorIndex(16)
    assert (empty.search(x[:2], 4)[1] == EMPTY_ID).all()


def test_hnsw_recall_against_flat():
    x, ids = _data(2000)
    q = x[:50] + 0.05 * np.random.default_rng(2).standard_normal((50, 16)).astype(np.float32)
    flat, hnsw = VectorIndex(16, "flat"), VectorIndex(16, "hnsw")
    flat.add(ids, x)
    hnsw.add(ids, x)
    truth, got = flat.search(q, 10)[1], hnsw.search(q, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, got)])
    assert recall > 0.9
    assert (got[:, 0] == ids[:50]).mean() > 0.9  # the perturbed vector finds its original


@pytest.mark.parametrize("kind", ["flat", "hnsw", "IVF4,Flat", "HNSW16,Flat"])
def test_add_delete_consistent_and_round_trip(kind, tmp_path):
    x, ids = _data(400)
    index = VectorIndex(16, kind)
    index.add(ids[:300], x[:300])
    index.add(ids[300:], x[300:])  # incremental
    gone = ids[::3]
    index.delete(gone)
    index.delete([123456])  # unknown ids are ignored
    assert len(index) == 400 - len(gone)
    assert set(index.ids()) == set(ids) - set(gone)
    _, got = index.search(x, 20)
    assert not np.isin(got, gone).any()
    with pytest.raises(KeyError):
        index.reconstruct([gone[0]])
    np.testing.assert_allclose(index.reconstruct([[ids[1], EMPTY_ID]])[0], np.stack([x[1], np.zeros(16)]), atol=1e-6)

    index.save(tmp_path)
    again = VectorIndex.load(tmp_path)
    assert len(again) == len(index) and again.factory == index.factory
    np.testing.assert_array_equal(again.search(x[:5], 5)[1], index.search(x[:5], 5)[1])
    # re-adding a deleted id brings it back; re-adding a live id replaces its vector
    again.add([gone[0], ids[1]], np.stack([x[0], x[2]]))
    assert gone[0] in again and len(again) == len(index) + 1
    np.testing.assert_allclose(again.reconstruct([ids[1]])[0], x[2], atol=1e-6)


def test_hnsw_tombstones_rebuild_after_many_deletes():
    x, ids = _data(200)
    index = VectorIndex(16, "hnsw")
    index.add(ids, x)
    index.delete(ids[:10])
    assert index._deleted  # hidden, not yet rebuilt
    index.delete(ids[10:100])
    assert not index._deleted and len(index) == 100  # rebuilt from the live vectors
    assert set(index.search(x, 5)[1].ravel()) <= set(ids[100:])


def test_ivf_falls_back_to_flat_when_too_few_vectors():
    x, ids = _data(100)
    index = VectorIndex(16, "ivfpq")
    with pytest.warns(UserWarning, match="flat"):
        index.add(ids, x)
    assert index.factory == "Flat"


def test_ivfpq_keeps_exact_vectors():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10_000, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(10_000, dtype=np.int64) + 7
    index = VectorIndex(8, "ivfpq")
    index.add(ids, x)
    assert index.factory.startswith("IVF") and not index.exact
    np.testing.assert_array_equal(index.reconstruct(ids[:20]), x[:20])
    assert np.mean([i in row for i, row in zip(ids[:20], index.search(x[:20], 5)[1])]) > 0.5
