import numpy as np
import pytest

from ragtune.config import Config
from ragtune.errors import RagtuneError
from ragtune.retrieval import registry
from ragtune.retrieval.base import EMPTY_ID, Hits
from ragtune.retrieval.rescore import RescoringRetriever, rescore


def test_rescore_hand_computed():
    # one query, three BM25 candidates (ids 10, 20, 30 with scores 9, 8, 1) and an empty slot
    first = Hits(np.array([[10, 20, 30, EMPTY_ID]]), np.array([[9.0, 8.0, 1.0, -np.inf]], dtype=np.float32))
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    vecs = np.array([[[0.1, 0.0], [0.5, 0.0], [0.95, 0.0], [0.0, 0.0]]], dtype=np.float32)
    got = rescore(first, q, vecs, 3, sparse_weight=0.1)
    # f = cos + 0.1 * bm25: 10 -> 0.1 + 0.9 = 1.0, 20 -> 0.5 + 0.8 = 1.3, 30 -> 0.95 + 0.1 = 1.05
    assert got.ids.tolist() == [[20, 30, 10]]
    np.testing.assert_allclose(got.scores, [[1.3, 1.05, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(got.offsets, [[0.8, 0.1, 0.9]], rtol=1e-6)
    np.testing.assert_allclose(got.vectors[0, :, 0], [0.5, 0.95, 0.1])
    # the contract the trainer relies on: scores = offsets + E(q) . vectors
    np.testing.assert_allclose(got.scores, got.offsets + np.einsum("nd,nkd->nk", q, got.vectors), rtol=1e-6)


def test_rescore_keeps_empty_slots_last_and_sparse_order_on_ties():
    first = Hits(np.array([[1, 2, EMPTY_ID]]), np.array([[5.0, 3.0, -np.inf]], dtype=np.float32))
    q = np.array([[1.0]], dtype=np.float32)
    vecs = np.array([[[0.0], [1.0], [0.0]]], dtype=np.float32)
    got = rescore(first, q, vecs, 5, sparse_weight=0.5)  # k capped at the candidates there are
    # 1 -> 2.5, 2 -> 1.0 + 1.5 = 2.5 (exact in float32): a tie, kept in BM25's order
    assert got.ids.tolist() == [[1, 2, EMPTY_ID]] and np.isneginf(got.scores[0, 2]) and got.offsets[0, 2] == 0.0
    zero = rescore(first, q, vecs, 2, sparse_weight=0.0)  # the dense score alone; no NaN from 0 * -inf
    assert zero.ids.tolist() == [[2, 1]] and not np.isnan(zero.offsets).any()


class _Sparse:
    kind = "bm25"

    def search(self, queries, k):
        return Hits(np.tile(np.array([[1, 2, 3]]), (len(queries), 1))[:, :k],
                    np.tile(np.array([[3.0, 2.0, 1.0]], dtype=np.float32), (len(queries), 1))[:, :k])


class _Encoder:
    def encode_queries(self, queries):
        return np.array([[1.0, 0.0] if q == "a" else [0.0, 1.0] for q in queries], dtype=np.float32)


class _Dense:
    kind = "dense"
    encoder = _Encoder()

    def passage_vectors(self, ids):
        table = {1: [0.0, 0.0], 2: [1.0, 0.0], 3: [0.0, 0.1]}
        return np.array([[table[int(i)] for i in row] for row in ids], dtype=np.float32)


def test_retriever_rescores_the_sparse_candidates_by_the_query_vector():
    r = RescoringRetriever([_Sparse(), _Dense()], sparse_weight=0.5, depth=3)
    hits = r.search(["a", "b"], 2)
    # "a": 1 -> 1.5, 2 -> 1 + 1 = 2, 3 -> 0.5 ; "b": 1 -> 1.5, 2 -> 1.0, 3 -> 0.1 + 0.5 = 0.6
    assert hits.ids.tolist() == [[2, 1], [1, 2]] and hits.vectors is None
    np.testing.assert_allclose(hits.scores, [[2.0, 1.5], [1.5, 1.0]])
    assert r.search(["a"], 2, return_vectors=True).vectors.shape == (1, 2, 2)
    with pytest.raises(TypeError, match="sequence of queries"):
        r.search("a", 2)


def test_registry_builds_rescore_from_the_config_and_checks_its_members():
    cfg = Config().updated(hybrid={"sparse_weight": 0.25, "depth": 7})
    assert registry.expand(["rescore"], cfg) == ["bm25", "dense"]
    r = registry.fused("rescore", [_Sparse(), _Dense()], cfg)
    assert isinstance(r, RescoringRetriever) and r.sparse_weight == 0.25 and r.depth == 7
    with pytest.raises(RagtuneError, match="second dense"):
        registry.fused("rescore", [_Dense(), _Sparse()], cfg)
    with pytest.raises(RagtuneError, match="not a combination"):
        registry.fused("dense", [_Dense()], cfg)
