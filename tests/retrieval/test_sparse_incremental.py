"""Segments, tombstones, optimize and save/load: deleted ids never come back, optimize equals a fresh build."""
import numpy as np
import pytest

from ragtune.config import SparseConfig
from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.retrieval.base import IndexedRetriever
from ragtune.retrieval.sparse import BM25Retriever, TfidfRetriever

TEXTS = [
    "sparse retrieval with bm25 is a strong baseline",
    "dense retrieval encodes questions and passages",
    "bm25 saturates term frequency",
    "passages are chunks of documents",
    "retrieval augmented generation answers questions",
    "term frequency and inverse document frequency",
    "documents are split into passages for retrieval",
    "generation conditions on retrieved passages",
    "frequency of terms in long documents",
    "bm25 and tf-idf are sparse models",
]
QUERIES = ["bm25 retrieval", "passages documents", "term frequency", "questions generation", "sparse models",
           "retrieval passages", "unknown words only"]
PASSAGES = [Passage(id=100 + i, doc_id=f"d{i}", text=t, title=f"t{i}") for i, t in enumerate(TEXTS)]
KINDS = [lambda: BM25Retriever(), lambda: BM25Retriever(SparseConfig(variant="bm25+")), lambda: TfidfRetriever()]


def assert_same_hits(a, b):
    assert (a.ids == b.ids).all()
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)


@pytest.mark.parametrize("make", KINDS)
def test_add_delete_optimize_equals_fresh_build(make, tmp_path):
    r = make()
    assert isinstance(r, IndexedRetriever) and r.kind in ("bm25", "tfidf")
    r.add(PASSAGES[:4])
    r.add(PASSAGES[4:7])
    r.add(PASSAGES[7:])
    assert len(r.segments) == 3 and len(r) == 10
    deleted = {100, 102, 107}
    r.delete(sorted(deleted))
    assert len(r) == 7
    hits = r.search(QUERIES, k=10)
    assert not deleted & set(hits.ids.ravel().tolist())
    live = [p for p in PASSAGES if p.id not in deleted]
    assert set(hits.ids[0]) - {-1} <= {p.id for p in live}

    r.save(tmp_path / "before")
    loaded = type(r).load(tmp_path / "before")
    assert_same_hits(loaded.search(QUERIES, 10), hits)  # deleted stay deleted across save/load
    assert len(loaded) == 7

    r.optimize()
    assert len(r.segments) == 1 and r.segments[0].n_docs == 7
    fresh = make()
    fresh.add(live)
    assert_same_hits(r.search(QUERIES, 10), fresh.search(QUERIES, 10))
    assert sorted(r.terms) == sorted(fresh.terms)

    r.save(tmp_path / "after")
    assert_same_hits(type(r).load(tmp_path / "after").search(QUERIES, 10), fresh.search(QUERIES, 10))


def test_idf_is_exact_across_segments_and_after_deletes():
    seg = BM25Retriever()
    for p in PASSAGES:
        seg.add([p])  # ten one-document segments
    one = BM25Retriever().fit(PASSAGES)
    # idf uses live global df in both; only avgdl is frozen per segment, so compare a corpus-level quantity
    assert (seg.df == one.df[[one.vocab[t] for t in seg.terms]]).all()
    seg.delete([101, 105])
    one.delete([101, 105])
    assert (seg.df == one.df[[one.vocab[t] for t in seg.terms]]).all()
    seg.optimize(), one.optimize()
    assert_same_hits(seg.search(QUERIES, 5), one.search(QUERIES, 5))


def test_loaded_index_is_memory_mapped_and_updatable(tmp_path):
    r = BM25Retriever().fit(PASSAGES[:6])
    r.save(tmp_path / "bm25")
    loaded = BM25Retriever.load(tmp_path / "bm25")
    assert isinstance(loaded.segments[0].weights, np.memmap)
    loaded.delete([101])
    loaded.add(PASSAGES[6:])
    fresh = BM25Retriever().fit([p for p in PASSAGES if p.id != 101])
    loaded.optimize()
    assert_same_hits(loaded.search(QUERIES, 10), fresh.search(QUERIES, 10))


def test_readd_replaces_and_batch_equals_single_queries():
    r = BM25Retriever().fit(PASSAGES)
    r.add([Passage(id=100, doc_id="d0", text="completely different words now")])
    assert len(r) == 10
    assert 100 not in r.search(["bm25 retrieval"], 10).ids[0]
    assert r.search(["completely different"], 1).ids[0, 0] == 100
    many = QUERIES * 3  # more than the gather path's batch size: the sparse-product path
    batch = r.search(many, 4)
    for i, q in enumerate(many):
        single = r.search([q], 4)
        assert (single.ids[0] == batch.ids[i]).all()
        np.testing.assert_allclose(single.scores[0], batch.scores[i], rtol=1e-5)


def test_edges(tmp_path):
    r = BM25Retriever()
    assert r.search(["anything"], 3).ids.tolist() == [[-1]]  # k is capped at the passages there are, at least 1
    with pytest.raises(RagtuneError):
        r.add([Passage(id=-1, doc_id="x", text="no store id")])
    with pytest.raises(RagtuneError):
        r.add([Passage(id=1, doc_id="x", text="a"), Passage(id=1, doc_id="x", text="b")])
    with pytest.raises(RagtuneError):
        BM25Retriever.load(tmp_path)
    r.add(PASSAGES[:2])
    r.delete([100, 101, 999])
    assert len(r) == 0 and r.search(["bm25"], 2).ids.tolist() == [[-1]]
