"""The numeric kernels of sparse search: scoring a chunk of queries against one segment, and row-wise top-k.

Two ways to score, picked per chunk by ``search_segment``: for many queries a sparse x sparse product
(``csr_product``: touches only the query terms' postings and outputs only matched documents); for a few queries
accumulation into a full (queries x documents) block (``accumulate_scores``: a handful of C calls, the lowest
fixed cost). Top-k then runs over CSR rows (``topk_csr_rows``), a block (``topk_block``, ``topk_row`` for one
query) or a block's matched entries only (``topk_block_matched``, for big segments). Ties go to the smaller id.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ragtune.retrieval.base import EMPTY_ID
from ragtune.retrieval.sparse.segment import Segment

try:  # the numeric half of scipy's sparse product; see csr_product
    from scipy.sparse._sparsetools import csr_matmat as _csr_matmat
except ImportError:  # pragma: no cover
    _csr_matmat = None

GATHER_MAX_QUERIES = 4  # up to this many queries per chunk, block accumulation (lowest fixed cost)
VECTOR_TOPK_MAX_DOCS = 1 << 16  # below this, one vectorised argpartition over all documents beats selecting matches
Query = tuple[np.ndarray, np.ndarray, np.ndarray]  # CSR pieces of a chunk of queries: indptr, term ids, weights


def best_k_matched(s: np.ndarray, docs: np.ndarray, k: int, ids: np.ndarray, out_ids: np.ndarray, out_scores: np.ndarray) -> None:
    """The k best of one query's matched documents (scores ``s`` at positions ``docs``) into one output row, best
    first, ties by smaller id."""
    m = len(s)
    if m > k:
        part = np.argpartition(s, m - k)[m - k:]
        if np.count_nonzero(s >= s[part].min()) > k:  # ties at the k-th score: argpartition picks any of them
            part = np.flatnonzero(s >= s[part].min())
        s, docs = s[part], docs[part]
    rid = ids[docs]
    order = np.lexsort((rid, -s))[:k]
    out_ids[: len(order)] = rid[order]
    out_scores[: len(order)] = s[order]


def topk_csr_rows(indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int, ids: np.ndarray,
               alive: np.ndarray | None, out_ids: np.ndarray, out_scores: np.ndarray) -> None:
    """Top-k of each row of a CSR score matrix into ``out_*`` (best first, ties by smaller id); dead columns skipped."""
    for i in range(len(indptr) - 1):
        a, b = indptr[i], indptr[i + 1]
        if a == b:
            continue
        s, d = vals[a:b], cols[a:b]
        if alive is not None:
            keep = alive[d]
            s, d = s[keep], d[keep]
        best_k_matched(s, d, k, ids, out_ids[i], out_scores[i])


def csr_product(indptr: np.ndarray, terms: np.ndarray, w: np.ndarray, m: sp.csr_matrix,
                    seg_indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR pieces of (queries x terms) @ m. scipy's ``@`` first runs a whole symbolic pass over the postings just to
    size its output; the number of postings touched is a cheap upper bound we already know, so call the numeric
    kernel directly. Falls back to ``@`` if scipy's internals move."""
    n = len(indptr) - 1
    t = np.minimum(terms, len(seg_indptr) - 2)
    bound = int(np.where(terms < len(seg_indptr) - 1, seg_indptr[t + 1] - seg_indptr[t], 0).sum())
    bound = max(1, min(bound, n * m.shape[1]))
    if _csr_matmat is not None and m.indices.dtype == np.int32 and m.indptr.dtype == np.int32 and bound < 2**31 - 1:
        c_indptr = np.empty(n + 1, dtype=np.int32)
        c_indices = np.empty(bound, dtype=np.int32)
        c_data = np.empty(bound, dtype=np.float32)
        _csr_matmat(n, m.shape[1], indptr.astype(np.int32), terms.astype(np.int32), w.astype(np.float32, copy=False),
                    m.indptr, m.indices, m.data, c_indptr, c_indices, c_data)
        return c_indptr, c_indices, c_data
    r = sp.csr_matrix((w, terms, indptr), shape=(n, m.shape[0])) @ m
    return r.indptr, r.indices, r.data


def accumulate_scores(q: Query, seg: Segment) -> np.ndarray | None:
    """(n x D_s) float64 scores of a chunk of queries (CSR pieces) against one segment, None if nothing matched.

    The postings of every (query, term) pair are gathered with one multi-range index, scaled by the query
    weights, and summed per (query, doc) by one ``bincount``.
    """
    indptr, terms, qw = q
    n = len(indptr) - 1
    if terms.max(initial=-1) >= seg.n_terms:  # terms newer than this segment have no postings in it
        inside = terms < seg.n_terms
        rows = np.repeat(np.arange(n), np.diff(indptr))[inside]
        terms, qw = terms[inside], qw[inside]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    starts, stops = seg.indptr[terms], seg.indptr[terms + 1]
    lens = stops - starts
    total = int(lens.sum())
    if total == 0:
        return None
    # positions starts[j] .. stops[j]-1 for every pair j, as one index array
    pos = np.arange(total, dtype=np.int64)
    pos += np.repeat(starts - (np.cumsum(lens) - lens), lens)
    d = seg.docs[pos].astype(np.int64)
    w = seg.weights[pos]
    if n > 1:
        qrows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        d += np.repeat(qrows * seg.n_docs, lens)
    w = w * np.repeat(qw, lens)
    return np.bincount(d, w, minlength=n * seg.n_docs).reshape(n, seg.n_docs)


def topk_block(scores: np.ndarray, k: int, ids: np.ndarray, out_ids: np.ndarray, out_scores: np.ndarray) -> None:
    """Row-wise top-k of a full score block in one vectorised argpartition; zero scores are no match."""
    n, d = scores.shape
    kk = min(k, d)
    part = np.argpartition(scores, d - kk, axis=1)[:, d - kk:] if kk < d else np.broadcast_to(np.arange(d), (n, d))
    s = np.take_along_axis(scores, part, axis=1)
    rid = ids[part]
    order = np.lexsort((rid, -s), axis=1)
    s = np.take_along_axis(s, order, axis=1)
    rid = np.take_along_axis(rid, order, axis=1)
    matched = s > 0
    out_ids[:, :kk] = np.where(matched, rid, EMPTY_ID)
    out_scores[:, :kk] = np.where(matched, s, -np.inf)
    if kk < d:  # rows with ties at the k-th score: argpartition picks any of them; the smaller ids must win
        kth = s[:, kk - 1]
        for i in np.flatnonzero((kth > 0) & ((scores >= kth[:, None]).sum(axis=1) > kk)):
            hit = np.flatnonzero(scores[i] > 0)
            best_k_matched(scores[i, hit], hit, kk, ids, out_ids[i], out_scores[i])


def topk_row(row: np.ndarray, k: int, ids: np.ndarray, out_ids: np.ndarray, out_scores: np.ndarray) -> None:
    """Top-k of one full score row with 1-D calls only (the single-query latency path)."""
    d = len(row)
    part = np.argpartition(row, d - k)[d - k:] if k < d else np.arange(d)
    if k < d and np.count_nonzero(row >= row[part].min()) > k:  # ties at the k-th score: smaller ids win
        part = np.flatnonzero(row >= row[part].min())
    s = row[part]
    part, s = part[s > 0], s[s > 0]
    order = np.lexsort((ids[part], -s))[:k]
    out_ids[: len(order)] = ids[part[order]]
    out_scores[: len(order)] = s[order]


def topk_block_matched(scores: np.ndarray, k: int, ids: np.ndarray, out_ids: np.ndarray, out_scores: np.ndarray) -> None:
    """Row-wise top-k selecting among matched documents only: O(matched) selection, for big segments."""
    for i in range(scores.shape[0]):
        row = scores[i]
        hit = np.flatnonzero(row > 0)
        if len(hit):
            best_k_matched(row[hit], hit, k, ids, out_ids[i], out_scores[i])


def search_segment(q: Query, seg: Segment, n_terms: int, k: int, out_ids: np.ndarray, out_scores: np.ndarray) -> None:
    """The k best live documents of ``seg`` for each query of the chunk into ``out_*`` (rows of EMPTY_ID/-inf
    where fewer matched)."""
    if len(q[0]) - 1 > GATHER_MAX_QUERIES:
        search_segment_product(q, seg, n_terms, k, out_ids, out_scores)
    else:
        search_segment_gather(q, seg, n_terms, k, out_ids, out_scores)


def search_segment_product(q: Query, seg: Segment, n_terms: int, k: int,
                           out_ids: np.ndarray, out_scores: np.ndarray) -> None:
    """Many queries: a sparse x sparse product, which touches only the query terms' postings and outputs only
    matched documents (measured 2x faster than block accumulation on SciFact, also with vectorised top-k)."""
    indptr, terms, w = q
    c_indptr, c_docs, c_scores = csr_product(indptr, terms, w, seg.matrix(n_terms), seg.indptr)
    alive = None if seg.n_live == seg.n_docs else seg.alive
    topk_csr_rows(c_indptr, c_docs, c_scores, k, seg.ids, alive, out_ids, out_scores)


def search_segment_gather(q: Query, seg: Segment, n_terms: int, k: int,
                          out_ids: np.ndarray, out_scores: np.ndarray) -> None:
    """Block accumulation: a handful of C calls per chunk instead of scipy's per-call object overhead (which
    dominated single-query latency) and its two passes over the postings."""
    scores = accumulate_scores(q, seg)
    if scores is None:
        return
    if seg.n_live < seg.n_docs:
        scores[:, ~seg.alive] = 0.0  # tombstones: never returned
    if scores.shape[0] == 1 and seg.n_docs <= VECTOR_TOPK_MAX_DOCS:
        topk_row(scores[0], k, seg.ids, out_ids[0], out_scores[0])
    elif seg.n_docs <= VECTOR_TOPK_MAX_DOCS or scores.shape[0] > 1:
        topk_block(scores, k, seg.ids, out_ids, out_scores)
    else:
        topk_block_matched(scores, k, seg.ids, out_ids, out_scores)
