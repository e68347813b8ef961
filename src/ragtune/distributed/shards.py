"""A sharded index: passages split into N shards, each an ordinary retriever folder, searched with an exact merge.

On disk (``DIR/shards/000/bm25``, ``DIR/shards/001/dense``, ...) a shard is a retriever folder like the single
index's ``DIR/bm25``; the manifest's ``"shards": {"count": N, "assign": "id % count", "passages": [...]}`` says how
passages were split. Passage ``id`` lives in shard ``id % N``, so a hit's vector is found without asking every shard.

Exactness. A shard is cut out of the whole-corpus retriever, never built on its passages alone:
- sparse (BM25, TF-IDF): the document side of every posting (BM25's saturated tf with the corpus-wide avgdl,
  TF-IDF's normalised tf with corpus-wide idf) is a column slice of the whole index, and every shard keeps the
  corpus-wide vocabulary, document frequencies and passage count for the query side (idf). So a passage scores
  the same in its shard as in the single index, and the top k of the union of the shards' top k is the single
  index's top k;
- dense flat: inner products do not depend on which other vectors are indexed; the same merge is exact;
- dense HNSW / IVF-PQ: each shard is its own approximate index, so the merge is exact over what the shards return
  and recall against flat is measured (``benchmarks/bench_distributed.py``).
Ties break by the smaller passage id, as the sparse engine's do.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ragtune.errors import RagtuneError
from ragtune.retrieval.base import EMPTY_ID, Hits, cap_k

SHARDS_DIR = "shards"
SPARSE_KINDS = ("bm25", "tfidf")


def shard_path(index_dir: Path, shard: int) -> Path:
    return Path(index_dir) / SHARDS_DIR / f"{shard:03d}"


def shard_of(ids: np.ndarray, count: int) -> np.ndarray:
    """The shard of each passage id (``EMPTY_ID`` maps to -1)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids == EMPTY_ID, -1, ids % count)


def shard_count(manifest: dict) -> int:
    """How many shards an index has (1 for the single, unsharded format)."""
    info = manifest.get("shards")
    return int(info.get("count", 1)) if isinstance(info, dict) else 1


# -- the merge (pure) -----------------------------------------------------------------------------------------
def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (ids, scores) of each row over several shards' (ids (n, k_s), scores (n, k_s)) results.

    Rows are sorted by score descending, ties by smaller id; empty slots (``EMPTY_ID``, -inf) go last and pad the
    result to width k.
    """
    n = parts[0][0].shape[0] if parts else 0
    ids = np.concatenate([np.asarray(p[0], dtype=np.int64).reshape(n, -1) for p in parts], axis=1) if parts \
        else np.zeros((0, 0), np.int64)
    scores = np.concatenate([np.asarray(p[1], dtype=np.float32).reshape(n, -1) for p in parts], axis=1) if parts \
        else np.zeros((0, 0), np.float32)
    empty = ids == EMPTY_ID
    # sort keys: empty last, then score descending, then id ascending
    order = np.lexsort((ids, -scores.astype(np.float64), empty), axis=1)[:, :k]
    out_ids = np.full((n, k), EMPTY_ID, dtype=np.int64)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    w = order.shape[1]
    out_ids[:, :w] = np.take_along_axis(ids, order, axis=1)
    out_scores[:, :w] = np.take_along_axis(scores, order, axis=1)
    out_scores[out_ids == EMPTY_ID] = -np.inf
    return out_ids, out_scores


def merge_hits(parts: Sequence[Hits], k: int) -> Hits:
    ids, scores = merge_topk([(h.ids, h.scores) for h in parts], k)
    return Hits(ids, scores)


# -- splitting a whole-corpus retriever -----------------------------------------------------------------------
def split_retriever(r: Any, count: int) -> list[Any]:
    """``count`` shard retrievers cut out of the whole-corpus retriever ``r`` (sparse or dense)."""
    if count < 1:
        raise RagtuneError(f"--shards must be at least 1, got {count}")
    if getattr(r, "kind", None) in SPARSE_KINDS:
        return _split_sparse(r, count)
    if getattr(r, "kind", None) == "dense":
        return _split_dense(r, count)
    raise RagtuneError(f"cannot shard a {getattr(r, 'kind', type(r).__name__)} retriever")


def _split_sparse(r: Any, count: int) -> list[Any]:
    import scipy.sparse as sp

    from ragtune.retrieval.sparse.segment import Segment

    r.optimize()  # one segment, no tombstones, weights from the live corpus' statistics
    segs = [s for s in r.segments if s.n_docs]
    if len(segs) != 1:
        raise RagtuneError("the sparse index is empty: nothing to shard")
    seg = segs[0]
    n_terms = seg.n_terms
    # the position of each posting as the matrix data, so one column slice carries weights and tf alike
    pos = sp.csr_matrix((np.arange(1, len(seg.docs) + 1, dtype=np.int64), seg.docs, seg.indptr),
                        shape=(n_terms, seg.n_docs))
    which = shard_of(seg.ids, count)
    out = []
    for s in range(count):
        cols = np.flatnonzero(which == s)
        part = pos[:, cols].tocsr()
        part.sort_indices()
        p = part.data - 1
        shard = copy.copy(r)  # shares the corpus-wide vocabulary, df, n_live, total_length: the query side
        shard.segments = [Segment(indptr=part.indptr.astype(np.int64), docs=part.indices.astype(np.int32),
                                  weights=seg.weights[p], tf=seg.tf[p], ids=seg.ids[cols], lengths=seg.lengths[cols],
                                  alive=np.ones(len(cols), dtype=bool), stats=dict(seg.stats))] if len(cols) else []
        out.append(shard)
    return out


def _split_dense(r: Any, count: int) -> list[Any]:
    from ragtune.retrieval.dense import DenseRetriever
    from ragtune.retrieval.dense.vector_index import VectorIndex

    ids = r.index.ids() if len(r) else np.zeros(0, np.int64)
    vecs = r.index.reconstruct(ids) if len(ids) else np.zeros((0, r.index.dim), np.float32)
    order = np.argsort(ids, kind="stable")  # ascending ids: ties in FAISS come out in insertion order
    ids, vecs = ids[order], vecs[order]
    which = shard_of(ids, count)
    out = []
    for s in range(count):
        sel = which == s
        shard = DenseRetriever(r.cfg, r.encoder)
        idx = VectorIndex(r.index.dim, r.index.kind, ef_search=r.index.ef_search,
                          ef_construction=r.index.ef_construction, nprobe=r.index.nprobe)
        if sel.any():
            idx.add(ids[sel], vecs[sel])
        shard.index = idx
        out.append(shard)
    return out


def write_shards(r: Any, index_dir: Path, kind: str, count: int) -> list[int]:
    """Split ``r`` and save its shards under ``index_dir/shards/NNN/kind`` (``index_dir`` is a staging copy);
    returns the passages per shard. The unsharded ``index_dir/kind`` is removed."""
    sizes = []
    for s, part in enumerate(split_retriever(r, count)):
        out = shard_path(index_dir, s) / kind
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        part.save(out)
        sizes.append(_local_size(part))
    shutil.rmtree(Path(index_dir) / kind, ignore_errors=True)
    return sizes


def remove_shards(index_dir: Path) -> None:
    shutil.rmtree(Path(index_dir) / SHARDS_DIR, ignore_errors=True)


def _local_size(part: Any) -> int:
    if getattr(part, "kind", None) in SPARSE_KINDS:
        return int(sum(s.n_live for s in part.segments))
    return len(part)


def load_merged(index_dir: Path, kind: str, count: int, *, device: str | None = None) -> Any:
    """The whole-corpus retriever of a sharded index, for an incremental update, without re-encoding or
    re-analysing the corpus: dense vectors are gathered from the shards; a sparse shard keeps the corpus-wide
    vocabulary and statistics (the query side) beside its column slice of the postings, so the shards' segments
    put side by side under shard 0's statistics are the whole index (``split_retriever`` reweights them on the
    next split, so the statistics stay exact)."""
    from ragtune.retrieval import registry

    parts = [registry.load(kind, shard_path(index_dir, s) / kind, device=device) for s in range(count)]
    if kind in SPARSE_KINDS:
        whole = parts[0]
        whole.segments = [seg for p in parts for seg in p.segments]
        return whole
    from ragtune.retrieval.dense import DenseRetriever

    whole = DenseRetriever(parts[0].cfg, parts[0].encoder)
    for p in parts:
        if len(p):
            ids = p.index.ids()
            whole.add_vectors(ids, p.index.reconstruct(ids))
    return whole


# -- searching in-process -------------------------------------------------------------------------------------
class ShardedRetriever:
    """The shards of one retriever kind, searched one after the other in this process, merged exactly.

    Dense shards share one query encoder: queries are encoded once and every shard searches the vectors.
    ``parts`` may be any objects with ``search``/``search_vectors``/``passage_vectors`` (the Ray version wraps
    actors in the same interface).
    """

    def __init__(self, kind: str, parts: Sequence[Any], sizes: Sequence[int], encoder: Any = None):
        self.kind = kind
        self.parts = list(parts)
        self.sizes = [int(s) for s in sizes]
        self.encoder = encoder

    @classmethod
    def load(cls, index_dir: Path, kind: str, count: int, sizes: Sequence[int] | None = None, *,
             device: str | None = None) -> "ShardedRetriever":
        from ragtune.retrieval import registry
        from ragtune.retrieval.index import load_part

        parts, encoder = [], None
        for s in range(count):
            where = shard_path(index_dir, s) / kind
            if kind == "dense" and encoder is not None:
                from ragtune.retrieval.dense import DenseRetriever

                part = load_part(index_dir, f"shard {s} of the {kind} retriever ({where.relative_to(index_dir)}/)",
                                 lambda: DenseRetriever.load(where, encoder=encoder, **({"device": device} if device else {})))
            else:
                part = load_part(index_dir, f"shard {s} of the {kind} retriever ({where.relative_to(index_dir)}/)",
                                 lambda: registry.load(kind, where, device=device))
            encoder = getattr(part, "encoder", None) if kind == "dense" else None
            parts.append(part)
        sizes = list(sizes) if sizes else [_local_size(p) for p in parts]
        return cls(kind, parts, sizes, encoder)

    def __len__(self) -> int:
        return sum(self.sizes)

    @property
    def is_dense(self) -> bool:
        return self.encoder is not None

    def _live(self) -> list[int]:
        return [s for s, n in enumerate(self.sizes) if n > 0]

    def search(self, queries: Sequence[str], k: int, *, return_vectors: bool = False) -> Hits:
        if isinstance(queries, str):
            raise TypeError("search() takes a sequence of queries; wrap a single query in a list")
        k = cap_k(k, len(self))
        if self.is_dense:
            return self.search_vectors(self.encoder.encode_queries(list(queries)), k, return_vectors=return_vectors)
        hits = merge_hits([self.parts[s].search(list(queries), k) for s in self._live()], k) if self._live() \
            else Hits.empty(len(queries), k)
        return hits

    def search_vectors(self, qvecs: np.ndarray, k: int, *, return_vectors: bool = False) -> Hits:
        qvecs = np.asarray(qvecs, dtype=np.float32)
        k = cap_k(k, len(self))
        hits = merge_hits([self.parts[s].search_vectors(qvecs, k) for s in self._live()], k) if self._live() \
            else Hits.empty(len(qvecs), k)
        if return_vectors:
            hits.vectors = self.passage_vectors(hits.ids)
        return hits

    def passage_vectors(self, ids: np.ndarray) -> np.ndarray:
        """(..., d) stored vectors of ``ids``, each asked of the shard holding it; zeros for EMPTY_ID."""
        ids = np.asarray(ids, dtype=np.int64)
        which = shard_of(ids, len(self.parts))
        out = np.zeros(ids.shape + (self.encoder.dim,), dtype=np.float32)
        for s in np.unique(which[which >= 0]):
            mask = which == s
            out[mask] = self.parts[int(s)].passage_vectors(ids[mask])
        return out

    # -- training (dense): the live index, shard by shard -----------------------------------------------------
    def reencode(self, passages: Sequence[Any], encoder: Any = None) -> None:
        """Re-encode every shard's passages with ``encoder``; the new vectors replace the old only once every
        shard is encoded."""
        which = shard_of(np.array([p.id for p in passages], dtype=np.int64), len(self.parts))
        fresh = [part.encoded_index([p for p, w in zip(passages, which) if w == s], encoder or self.encoder)
                 for s, part in enumerate(self.parts)]
        for part, index in zip(self.parts, fresh):
            part.index = index

    def encoded_index(self, passages: Sequence[Any], encoder: Any = None) -> Any:
        """One whole vector index of ``passages`` (a trained model's saved index)."""
        return self.parts[0].encoded_index(passages, encoder or self.encoder)

    @property
    def index(self) -> Any:
        """The shards' vectors as one ``VectorIndex`` (checkpoints and saved models hold the whole index)."""
        return whole_index([(p.index.ids(), p.index.reconstruct(p.index.ids())) for p in self.parts if len(p)],
                           self.encoder.dim)

    @index.setter
    def index(self, value: Any) -> None:
        from ragtune.retrieval.dense.vector_index import VectorIndex

        ids = value.ids()
        vecs = value.reconstruct(ids)
        which = shard_of(ids, len(self.parts))
        for s, part in enumerate(self.parts):
            old = part.index
            fresh = VectorIndex(old.dim, old.kind, ef_search=old.ef_search, ef_construction=old.ef_construction,
                                nprobe=old.nprobe)
            if (which == s).any():
                fresh.add(ids[which == s], vecs[which == s])
            part.index = fresh

    def __repr__(self) -> str:
        return f"ShardedRetriever({self.kind!r}, shards={len(self.parts)}, passages={len(self)})"


def whole_index(parts: Sequence[tuple[np.ndarray, np.ndarray]], dim: int) -> Any:
    """One flat ``VectorIndex`` of the shards' (ids, vectors), in id order (what checkpoints and saved models
    hold)."""
    from ragtune.retrieval.dense.vector_index import VectorIndex

    ids = np.concatenate([i for i, _ in parts])
    vecs = np.concatenate([v for _, v in parts])
    order = np.argsort(ids, kind="stable")
    whole = VectorIndex(dim)
    whole.add(ids[order], vecs[order])
    return whole
