import numpy as np
import pytest

from ragtune.retrieval.base import EMPTY_ID, Hits
from ragtune.retrieval.hybrid import HybridRetriever, minmax, rrf, weighted_fusion


def _hits(rows, scores=None):
    k = max(len(r) for r in rows)
    ids = np.full((len(rows), k), EMPTY_ID, dtype=np.int64)
    sc = np.full((len(rows), k), -np.inf, dtype=np.float32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        sc[i, : len(r)] = scores[i] if scores else np.arange(len(r), 0, -1)
    return Hits(ids, sc)


def test_rrf_hand_computed():
    a = _hits([[1, 2, 3]])
    b = _hits([[3, 1, 4]])
    fused = rrf([a, b], 4, rrf_k=60)
    expect = {1: 1 / 61 + 1 / 62, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 63}
    order = sorted(expect, key=lambda d: -expect[d])  # 1, 3, 2, 4
    assert list(fused.ids[0]) == order
    np.testing.assert_allclose(fused.scores[0], [expect[d] for d in order], rtol=1e-6)


def test_rrf_weights_padding_and_k():
    a = _hits([[1, 2], [5]])
    b = _hits([[2, 1], [6]])
    fused = rrf([a, b], 3, rrf_k=1, weights=[2.0, 1.0])
    # q0: 1 -> 2/2 + 1/3, 2 -> 2/3 + 1/2 ; q1: 5 -> 2/2, 6 -> 1/2, third slot empty
    assert list(fused.ids[0, :2]) == [1, 2] and fused.ids[0, 2] == EMPTY_ID
    np.testing.assert_allclose(fused.scores[0, :2], [1 + 1 / 3, 2 / 3 + 1 / 2], rtol=1e-6)
    assert list(fused.ids[1]) == [5, 6, EMPTY_ID] and np.isneginf(fused.scores[1, 2])


def test_rrf_ties_broken_by_id():
    fused = rrf([_hits([[7]]), _hits([[3]])], 2)
    assert list(fused.ids[0]) == [3, 7]


def test_minmax_and_weighted_fusion_hand_computed():
    valid = np.array([[True, True, True, False]])
    np.testing.assert_allclose(minmax(np.array([[10.0, 5.0, 0.0, -np.inf]]), valid), [[1.0, 0.5, 0.0, 0.0]])
    np.testing.assert_allclose(minmax(np.array([[3.0, 3.0]]), np.array([[True, True]])), [[1.0, 1.0]])
    a = _hits([[1, 2, 3]], scores=[[10.0, 5.0, 0.0]])  # norm 1, .5, 0
    b = _hits([[3, 4]], scores=[[0.9, 0.1]])  # norm 1, 0
    fused = weighted_fusion([a, b], 4, weights=[0.5, 1.0])
    # 1: .5, 2: .25, 3: 0 + 1 = 1, 4: 0
    assert list(fused.ids[0]) == [3, 1, 2, 4]
    np.testing.assert_allclose(fused.scores[0], [1.0, 0.5, 0.25, 0.0])


def test_bad_inputs():
    with pytest.raises(ValueError):
        rrf([], 3)
    with pytest.raises(ValueError):
        rrf([_hits([[1]]), _hits([[1], [2]])], 3)
    with pytest.raises(ValueError):
        rrf([_hits([[1]])], 3, weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        HybridRetriever([], method="max")  # type: ignore[arg-type]


class _Fixed:
    def __init__(self, ranking):
        self.ranking = ranking
        self.asked = None

    def search(self, queries, k):
        self.asked = k
        return _hits([self.ranking[:k]] * len(queries))


def test_hybrid_retriever_fuses_at_depth():
    a, b = _Fixed([1, 2, 3, 4]), _Fixed([4, 3, 9])
    h = HybridRetriever([a, b], depth=3)
    hits = h.search(["q1", "q2"], 2)
    assert a.asked == 3 and hits.ids.shape == (2, 2)
    assert list(hits.ids[0]) == list(rrf([_hits([[1, 2, 3]]), _hits([[4, 3, 9]])], 2).ids[0])
    w = HybridRetriever([a, b], method="weighted", weights=[1, 1], depth=10).search(["q"], 5)
    assert set(w.ids[0]) == {1, 2, 3, 4, 9}
