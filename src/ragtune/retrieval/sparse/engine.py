"""A segmented sparse index: vocabulary, live document frequencies, segments, batched search.

Incremental by segments, like Lucene: ``add`` analyses the new passages into a new small segment, ``delete``
flips tombstone bits, ``optimize`` merges everything into one segment. The score splits into a query side
(idf from GLOBAL live document frequencies, computed at query time, so idf is exact however many segments
there are) and a document side stored per segment (BM25's saturated tf, TF-IDF's normalised tf). Only what the
document side needs from the collection (BM25's avgdl, TF-IDF's document norms) is frozen per segment at build
time; ``optimize()`` recomputes it, after which scores equal a from-scratch build over the live passages.

Search multiplies a sparse (queries x terms) matrix of query weights by each segment's (terms x docs) matrix:
scipy's sparse-sparse product touches only the postings of query terms and releases the GIL, so chunks of queries
run on two threads. Top-k per row uses ``np.argpartition`` on the row's matched documents only (the kernels are
``sparse.kernels``; this module is the index and its bookkeeping).
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.retrieval.base import EMPTY_ID, Hits, cap_k
from ragtune.retrieval.sparse.kernels import search_segment
from ragtune.retrieval.sparse.scoring import BM25Weighting, TfidfWeighting
from ragtune.retrieval.sparse.segment import TF_MAX, Segment, count_terms
from ragtune.text.analyzer import Analyzer

FORMAT_VERSION = 1
_ENCODE_BATCH = 1024  # documents analysed at a time: their raw token strings (~50 bytes each) are the peak memory
_RESULT_BUDGET = 1 << 22  # query rows x segment documents per chunk: bounds a chunk's score memory


class _TermIds(dict):
    """raw token -> term id (-1 for a dropped token), growing the vocabulary on a miss: one dict lookup per token
    at indexing time, and the analyzer's stemmer runs once per distinct raw token."""

    def __init__(self, owner: "SparseRetriever"):
        super().__init__()
        self._owner = owner

    def __missing__(self, raw: str) -> int:
        term = self._owner.analyzer.term(raw)
        tid = self._owner._term_id(term) if term else -1
        self[raw] = tid
        return tid


class _QueryIds(dict):
    """raw query token -> term id, -1 if dropped or not in the vocabulary; never grows the vocabulary. Cleared
    whenever the vocabulary changes, so a term added later is found."""

    def __init__(self, owner: "SparseRetriever"):
        super().__init__()
        self._owner = owner

    def __missing__(self, raw: str) -> int:
        term = self._owner.analyzer.term(raw)
        tid = self[raw] = self._owner.vocab.get(term, -1) if term else -1
        return tid


class SparseRetriever:
    """Base of ``BM25Retriever`` and ``TfidfRetriever``: the weighting is the only difference."""

    kind: str = "sparse"

    def __init__(self, weighting: BM25Weighting | TfidfWeighting, analyzer: Analyzer, *, n_threads: int | None = None):
        self.weighting = weighting
        self.analyzer = analyzer
        # scipy's sparse product releases the GIL: two threads measured 2x on the product alone
        self.n_threads = n_threads or min(2, os.cpu_count() or 1)
        self.terms: list[str] = []
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(0, dtype=np.int64)  # live documents containing each term
        self.n_live = 0
        self.total_length = 0  # sum of analysed lengths of live documents (for avgdl)
        self.segments: list[Segment] = []
        self._raw_ids = _TermIds(self)
        self._query_ids = _QueryIds(self)

    # -- vocabulary -------------------------------------------------------------------------------------------
    def _term_id(self, term: str) -> int:
        tid = self.vocab.get(term)
        if tid is None:
            tid = self.vocab[term] = len(self.terms)
            self.terms.append(term)
            if self._query_ids:
                self._query_ids.clear()
        return tid

    def _encode(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """Flat term ids (one array per batch of documents) and per-document lengths of analysed texts."""
        get, split = self._raw_ids.__getitem__, self.analyzer.split
        flats, lengths = [], []
        for start in range(0, len(texts), _ENCODE_BATCH):
            raw = [split(t) for t in texts[start : start + _ENCODE_BATCH]]
            counts = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
            flat = np.fromiter(map(get, chain.from_iterable(raw)), dtype=np.int32, count=int(counts.sum()))
            keep = flat >= 0
            if keep.all():
                flats.append(flat)
                lengths.append(counts)
            else:
                doc_of = np.repeat(np.arange(len(raw)), counts)[keep]
                flats.append(flat[keep])
                lengths.append(np.bincount(doc_of, minlength=len(raw)))
        if not flats:
            return [np.zeros(0, np.int32)], np.zeros(0, np.int64)
        return flats, np.concatenate(lengths)

    # -- IndexedRetriever -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_live

    def fit(self, passages: Sequence[Passage]) -> "SparseRetriever":
        self.add(passages)
        return self

    def add(self, passages: Sequence[Passage]) -> None:
        if not passages:
            return
        ids = np.fromiter((p.id for p in passages), dtype=np.int64, count=len(passages))
        if (ids < 0).any():
            raise RagtuneError("passages must carry passage-store ids (>= 0) before indexing; add them to a PassageStore first")
        if len(np.unique(ids)) != len(ids):
            raise RagtuneError("the same passage id appears twice in one add(); ids must be unique")
        self.delete(ids)  # re-adding an id replaces the old copy
        flats, lengths = self._encode([p.indexed_text for p in passages])
        indptr, docs, tf = count_terms(flats, lengths, len(self.terms))
        self._grow_df()
        self.df += np.diff(indptr)
        self.n_live += len(ids)
        self.total_length += int(lengths.sum())
        self.segments.append(self._build_segment(indptr, docs, tf, ids, lengths))

    def _grow_df(self) -> None:
        if len(self.df) < len(self.terms):
            self.df = np.concatenate([self.df, np.zeros(len(self.terms) - len(self.df), dtype=np.int64)])

    def _build_segment(self, indptr: np.ndarray, docs: np.ndarray, tf: np.ndarray, ids: np.ndarray,
                       lengths: np.ndarray) -> Segment:
        avgdl = self.total_length / max(self.n_live, 1) or 1.0
        weights = self.weighting.doc_weights(tf, docs, indptr, lengths, self.df, self.n_live, avgdl)
        if tf.dtype != np.uint16:
            tf = np.minimum(tf, TF_MAX).astype(np.uint16)
        return Segment(indptr=indptr, docs=docs, weights=weights, tf=tf, ids=ids, lengths=lengths.astype(np.int32), alive=np.ones(len(ids), dtype=bool),
                       stats={"avgdl": avgdl, "n_docs": self.n_live})

    def delete(self, ids: Iterable[int]) -> None:
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        if not len(ids):
            return
        for seg in self.segments:
            dead = np.isin(seg.ids, ids) & seg.alive
            if not dead.any():
                continue
            seg.alive = seg.alive & ~dead  # a fresh array: a loaded mask may be shared with a saved file
            self.df[: seg.n_terms] -= seg.term_counts(dead)
            self.n_live -= int(dead.sum())
            self.total_length -= int(seg.lengths[dead].sum())

    def optimize(self) -> None:
        """Merge all segments into one, drop tombstones and unused terms, reweight with current statistics."""
        if len(self.segments) == 1 and self.segments[0].alive.all() and (self.df > 0).all():
            return
        n_terms = len(self.terms)
        blocks, ids, lengths = [], [], []
        for seg in self.segments:
            tf = sp.csr_matrix((seg.tf.astype(np.float32), seg.docs, seg.matrix(n_terms).indptr), shape=(n_terms, seg.n_docs))
            live = np.flatnonzero(seg.alive)
            blocks.append(tf[:, live] if len(live) < seg.n_docs else tf)
            ids.append(seg.ids[live])
            lengths.append(seg.lengths[live])
        used = np.flatnonzero(self.df > 0)
        merged = sp.hstack(blocks, format="csr")[used] if blocks else sp.csr_matrix((0, 0), dtype=np.float32)
        merged.sort_indices()
        self.terms = [self.terms[t] for t in used]
        self.vocab = {t: i for i, t in enumerate(self.terms)}
        self.df = self.df[used]
        self._raw_ids = _TermIds(self)
        self._query_ids = _QueryIds(self)
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        self.segments = []
        if len(all_ids):
            self.segments.append(self._build_segment(merged.indptr.astype(np.int64), merged.indices.astype(np.int32),
                                                     merged.data, all_ids, all_lengths))

    # -- search -----------------------------------------------------------------------------------------------
    def query_terms(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Query-side weights as CSR pieces (indptr (n+1,), term ids, weights) and each query's constant
        (the bm25l/bm25+ tfc(0) part). Built with numpy only: scipy's constructors cost more than the work here."""
        n = len(queries)
        df, width = self.df, max(len(self.terms), 1)
        if n == 1:  # the latency path: a dict beats numpy's fixed costs on a dozen tokens
            counts: dict[int, int] = {}
            for tid in map(self._query_ids.__getitem__, self.analyzer.split(queries[0])):
                if tid >= 0:
                    counts[tid] = counts.get(tid, 0) + 1
            terms = np.fromiter(counts, dtype=np.int64, count=len(counts))
            qtf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            live = df[terms] > 0
            terms, qtf = terms[live], qtf[live]
            rows = np.zeros(len(terms), dtype=np.int64)
        else:
            raw = list(map(self.analyzer.split, queries))
            n_tok = np.fromiter(map(len, raw), dtype=np.int64, count=n)
            flat = np.fromiter(map(self._query_ids.__getitem__, chain.from_iterable(raw)), dtype=np.int64, count=int(n_tok.sum()))
            rows = np.repeat(np.arange(n), n_tok)
            keep = flat >= 0
            keep[keep] = df[flat[keep]] > 0
            # A repeated query term counts once per occurrence (as bm25s and rank_bm25 score it): sum them up.
            key, qtf_i = np.unique(rows[keep] * width + flat[keep], return_counts=True)
            rows, terms = np.divmod(key, width)
            qtf = qtf_i.astype(np.float64)
        w, const = self.weighting.query_weights(qtf, df[terms], rows, n, self.n_live)
        if n == 1:
            return np.array([0, len(terms)], dtype=np.int64), terms, w, const
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return indptr, terms, w, const

    def search(self, queries: Sequence[str], k: int = 10) -> Hits:
        if isinstance(queries, str):
            raise TypeError("search() takes a sequence of queries; wrap a single query in a list")
        n = len(queries)
        k = cap_k(k, self.n_live)
        hits = Hits.empty(n, k)
        if n == 0 or k <= 0 or self.n_live == 0:
            return hits
        indptr, terms, w, const = self.query_terms(queries)
        n_docs = sum(seg.n_docs for seg in self.segments)
        step = max(1, min(n, _RESULT_BUDGET // max(n_docs, 1)))
        if n > step and self.n_threads > 1:
            # several chunks per thread, so one thread's top-k loop (holds the GIL) overlaps another's product
            step = min(step, -(-n // (4 * self.n_threads)))
        starts = range(0, n, step)

        def run(start: int) -> None:
            stop = min(start + step, n)
            a, b = indptr[start], indptr[stop]
            chunk = (indptr[start : stop + 1] - a, terms[a:b], w[a:b])
            self._search_chunk(chunk, k, hits.ids[start:stop], hits.scores[start:stop])

        if len(starts) > 1 and self.n_threads > 1:
            with ThreadPoolExecutor(self.n_threads) as pool:
                list(pool.map(run, starts))
        else:
            for s in starts:
                run(s)
        if const.any():  # bm25l / bm25+ only
            hits.scores += np.where(hits.ids != EMPTY_ID, const[:, None], 0).astype(np.float32)
        return hits

    def _search_chunk(self, q: tuple[np.ndarray, np.ndarray, np.ndarray], k: int, out_ids: np.ndarray,
                      out_scores: np.ndarray) -> None:
        n_terms = len(self.terms)
        live = [seg for seg in self.segments if seg.n_live]
        if len(live) == 1:
            search_segment(q, live[0], n_terms, k, out_ids, out_scores)
            return
        # Several segments: k best of each, then the k best of those.
        seg_ids = np.full((len(q[0]) - 1, k * len(live)), EMPTY_ID, dtype=np.int64)
        seg_scores = np.full(seg_ids.shape, -np.inf, dtype=np.float32)
        for j, seg in enumerate(live):
            search_segment(q, seg, n_terms, k, seg_ids[:, j * k : (j + 1) * k], seg_scores[:, j * k : (j + 1) * k])
        order = np.lexsort((seg_ids, -seg_scores), axis=1)[:, :k]
        out_ids[:] = np.take_along_axis(seg_ids, order, axis=1)
        out_scores[:] = np.take_along_axis(seg_scores, order, axis=1)

    # -- persistence ------------------------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        return self.weighting.params()

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, seg in enumerate(self.segments):
            seg.save(path / f"segment-{i:04d}")
        np.save(path / "df.npy", self.df)
        (path / "vocab.json").write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")
        meta = {"format_version": FORMAT_VERSION, "kind": self.kind, "analyzer": self.analyzer.to_dict(),
                "weighting": self._params(), "n_terms": len(self.terms), "n_live": self.n_live,
                "total_length": self.total_length, "segments": len(self.segments)}
        (path / "sparse.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def _from_meta(cls, meta: dict[str, Any]) -> "SparseRetriever":
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path, *, mmap: bool = True, **runtime: Any) -> "SparseRetriever":
        path = Path(path)
        meta_file = path / "sparse.json"
        if not meta_file.exists():
            raise RagtuneError(f"no sparse index in {path} (missing sparse.json); build the index first")
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise RagtuneError(f"sparse index in {path} has format {meta.get('format_version')}, this ragtune "
                               f"reads {FORMAT_VERSION}; rebuild the index")
        if meta.get("kind") != cls.kind:
            raise RagtuneError(f"{path} holds a {meta.get('kind')!r} index, not {cls.kind!r}")
        self = cls._from_meta(meta)
        if "n_threads" in runtime:
            self.n_threads = runtime["n_threads"]
        self.terms = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        self.vocab = {t: i for i, t in enumerate(self.terms)}
        self._query_ids.clear()
        self.df = np.load(path / "df.npy")
        self.n_live, self.total_length = meta["n_live"], meta["total_length"]
        self.segments = [Segment.load(path / f"segment-{i:04d}", mmap=mmap) for i in range(meta["segments"])]
        return self

