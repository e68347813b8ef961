"""Passage vectors in a FAISS index, addressed by passage-store ids.

The FAISS index is wrapped in ``IndexIDMap2`` so search returns store ids and ``reconstruct`` takes them;
IVF indexes store ids natively (``IndexIDMap`` over IVF would break on ``remove_ids``, which does not compact
IVF's internal numbering), so they are used bare.
Index types FAISS cannot delete from (HNSW) get tombstones: deleted ids are excluded at search time with an
``IDSelector`` and the graph is rebuilt once they pile up. Index types whose stored vectors are lossy (PQ, SQ,
IVF) get an exact float32 side store, so training sees the true passage vectors.
"""
from __future__ import annotations

import json
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ragtune.atomic import write_json, write_with
from ragtune.retrieval.base import EMPTY_ID

log = logging.getLogger(__name__)

SHORT_NAMES = {"flat": "Flat", "hnsw": "HNSW32"}
INDEX_FILE, META_FILE, SIDE_FILE = "index.faiss", "index.json", "vectors.npz"
AUTO_IVFPQ_MIN = 9984  # 39 points per PQ codeword (FAISS' advice); below this exact search is fast anyway
REBUILD_FRACTION = 0.25  # rebuild a tombstoned index once this share of it is dead
TIE_MARGIN = 16  # extra hits fetched so that ties at the k-th score resolve to the smaller ids


def _pq_subquantizers(dim: int) -> int:
    # About 8 dimensions per 8-bit code (FAISS' usual trade-off), and m must divide dim.
    for m in range(min(64, dim // 4) or 1, 0, -1):
        if dim % m == 0:
            return m
    return 1


def auto_ivfpq(dim: int, n: int) -> str:
    nlist = max(1, int(math.sqrt(n)))
    return f"IVF{nlist},PQ{_pq_subquantizers(dim)}"


def min_train_points(factory: str) -> int:
    """FAISS' own recommendation: 39 points per centroid (IVF lists; 256 codewords for 8-bit PQ)."""
    need = 1
    if m := re.search(r"IVF(\d+)", factory):
        need = max(need, 39 * int(m.group(1)))
    if re.search(r"PQ\d+", factory):
        need = max(need, 39 * 256)
    return need


def _is_exact(factory: str) -> bool:
    return factory == "Flat" or re.fullmatch(r"HNSW\d+(,Flat)?", factory) is not None


class VectorIndex:
    """Inner-product search over float32 vectors keyed by int64 passage ids.

    ``kind`` is "flat" (exact, the default), "hnsw", "ivfpq" (sized on the first add) or any FAISS factory
    string ("HNSW64", "IVF1024,PQ32", "OPQ16,IVF256,PQ16", ...).
    """

    def __init__(self, dim: int, kind: str = "flat", *, ef_search: int = 128, ef_construction: int = 200, nprobe: int = 16) -> None:
        self.dim = dim
        self.kind = kind
        self.ef_search, self.ef_construction, self.nprobe = ef_search, ef_construction, nprobe
        # The concrete factory string; None for "ivfpq" until the first add tells us how many vectors there are.
        self.factory: str | None = None if kind.lower() == "ivfpq" else SHORT_NAMES.get(kind.lower(), kind)
        self._index: Any = None  # faiss.IndexIDMap2, built on the first add (IVF types train on it)
        self._deleted: set[int] = set()  # tombstones, only for types without remove_ids
        self._side_ids = np.empty(0, dtype=np.int64)
        self._side_vecs = np.empty((0, dim), dtype=np.float32)
        self._side_pos: dict[int, int] | None = None

    # -- building -----------------------------------------------------------------------------------------

    def _build(self, factory: str, train: np.ndarray | None) -> Any:
        import faiss

        inner = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        if hasattr(inner, "hnsw"):
            inner.hnsw.efConstruction = self.ef_construction
        if not inner.is_trained:
            assert train is not None
            inner.train(train)
        try:
            faiss.extract_index_ivf(inner)
            return inner  # IVF keeps ids itself
        except RuntimeError:
            return faiss.IndexIDMap2(inner)

    def _create(self, vecs: np.ndarray) -> None:
        if self.factory is None:
            if len(vecs) < AUTO_IVFPQ_MIN:
                warnings.warn(f"ivfpq needs at least {AUTO_IVFPQ_MIN} vectors on the first add, got {len(vecs)}; using an exact flat index", stacklevel=3)
                self.factory = "Flat"
            else:
                self.factory = auto_ivfpq(self.dim, len(vecs))
        if self.factory != "Flat" and len(vecs) < min_train_points(self.factory):
            import faiss

            if not faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT).is_trained:
                warnings.warn(
                    f"index {self.factory!r} needs {min_train_points(self.factory)} vectors to train, got {len(vecs)}; using an exact flat index",
                    stacklevel=3,
                )
                self.factory = "Flat"
        self._index = self._build(self.factory, vecs)

    @property
    def exact(self) -> bool:
        """Whether the FAISS index itself returns the vectors that were added (else a side store does)."""
        return self.factory is not None and _is_exact(self.factory)

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under store ids; an id already present is replaced (an edited passage)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim or len(ids) != len(vecs):
            raise ValueError(f"expected {len(ids)} vectors of dim {self.dim}, got {vecs.shape}")
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids in one add")
        if self._index is None:
            self._create(vecs)
        else:
            present = ids[np.isin(ids, self._all_ids())]
            if len(present):
                self._remove(present, allow_tombstone=False)
        self._deleted.difference_update(ids.tolist())
        self._index.add_with_ids(vecs, ids)
        if not self.exact:
            self._side_ids = np.concatenate([self._side_ids, ids])
            self._side_vecs = np.concatenate([self._side_vecs, vecs])
            self._side_pos = None

    def delete(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove ids (unknown ones are ignored); returns how many were live."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._index is None or len(ids) == 0:
            return 0
        live = ids[np.isin(ids, self.ids())]
        if len(live):
            self._remove(live, allow_tombstone=True)
        return len(live)

    def _remove(self, ids: np.ndarray, *, allow_tombstone: bool) -> None:
        import faiss

        try:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
        except RuntimeError:  # HNSW cannot remove: hide the ids, rebuild when many are hidden
            self._deleted.update(ids.tolist())
            if not allow_tombstone or len(self._deleted) > REBUILD_FRACTION * self._index.ntotal:
                self._rebuild()
        if not self.exact:
            keep = ~np.isin(self._side_ids, ids)
            self._side_ids, self._side_vecs, self._side_pos = self._side_ids[keep], self._side_vecs[keep], None

    def _rebuild(self) -> None:
        live = self.ids()
        vecs = self.reconstruct(live)
        self._index = self._build(self.factory or "Flat", vecs)
        self._deleted.clear()
        self._index.add_with_ids(vecs, live)

    # -- reading ------------------------------------------------------------------------------------------

    def _all_ids(self) -> np.ndarray:
        import faiss

        if self._index is None:
            return np.empty(0, dtype=np.int64)
        if not self.exact:  # the side store mirrors the index and covers bare IVF, which has no id_map
            return self._side_ids
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)

    def ids(self) -> np.ndarray:
        """Live ids, in insertion order."""
        all_ids = self._all_ids()
        if self._deleted:
            all_ids = all_ids[~np.isin(all_ids, np.fromiter(self._deleted, dtype=np.int64))]
        return all_ids

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal) - len(self._deleted)

    def __contains__(self, pid: int) -> bool:
        return int(pid) not in self._deleted and bool(np.isin(pid, self._all_ids()))

    def _search_params(self, k: int) -> Any:
        import faiss

        sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self._deleted, dtype=np.int64))) if self._deleted else None
        inner = faiss.downcast_index(self._index.index if isinstance(self._index, faiss.IndexIDMap2) else self._index)
        if hasattr(inner, "hnsw"):
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        elif hasattr(inner, "nprobe") or "IVF" in (self.factory or ""):
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
            params._sel = sel  # the SWIG object must outlive the search
        return params

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), both (n, k): float32 descending, int64; EMPTY_ID and -inf where nothing is left."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n = len(q)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        ids = np.full((n, k), EMPTY_ID, dtype=np.int64)
        if self._index is None or len(self) == 0 or k == 0 or n == 0:
            return scores, ids
        kk = min(k, int(self._index.ntotal))
        # Equal scores go to the smaller id, as the sparse engine and the shard merge order them. FAISS keeps any
        # one of a tie at the k-th score (which one can vary with its threads), so more are fetched and cut; while
        # a row's last fetched score still equals its k-th, the tie may run on past the fetch: fetch twice as many.
        total = int(self._index.ntotal)
        wide = min(kk + TIE_MARGIN, total)
        while True:
            d, i = self._index.search(q, wide, params=self._search_params(wide))
            d[i < 0] = -np.inf  # FAISS pads with -FLT_MAX under inner product
            if wide >= total or not np.any(np.isfinite(d[:, -1]) & (d[:, -1] == d[:, kk - 1])):
                break
            wide = min(2 * wide, total)
        order = np.lexsort((np.where(i < 0, np.iinfo(np.int64).max, i), -d), axis=1)[:, :kk]
        d, i = np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
        scores[:, :kk], ids[:, :kk] = d, i
        return scores, ids

    def _side_lookup(self, ids: np.ndarray) -> np.ndarray:
        if self._side_pos is None:
            self._side_pos = {int(p): r for r, p in enumerate(self._side_ids)}
        try:
            rows = [self._side_pos[int(p)] for p in ids]
        except KeyError as e:
            raise KeyError(f"passage id {e.args[0]} is not in the vector index") from None
        return self._side_vecs[rows]

    def reconstruct(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (any shape) as (..., d) float32; zeros where id is EMPTY_ID."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.shape + (self.dim,), dtype=np.float32)
        valid = ids != EMPTY_ID
        want = ids[valid]
        if len(want) == 0:
            return out
        dead = [int(p) for p in want if int(p) in self._deleted] if self._deleted else []
        if self._index is None or dead:
            raise KeyError(f"passage id {dead[0] if dead else int(want[0])} is not in the vector index")
        if self.exact:
            try:
                out[valid] = self._index.reconstruct_batch(want)
            except RuntimeError:
                missing = want[~np.isin(want, self._all_ids())]
                raise KeyError(f"passage id {int(missing[0]) if len(missing) else '?'} is not in the vector index") from None
        else:
            out[valid] = self._side_lookup(want)
        return out

    # -- persistence --------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """``index.faiss`` + ``index.json`` (+ ``vectors.npz`` for lossy types), each written then renamed."""
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._index is not None:
            write_with(directory / INDEX_FILE, lambda p: faiss.write_index(self._index, p))
        if not self.exact and self._index is not None:
            def write_side(p: str) -> None:
                with open(p, "wb") as f:
                    np.savez(f, ids=self._side_ids, vectors=self._side_vecs)

            write_with(directory / SIDE_FILE, write_side)
        meta = {
            "dim": self.dim, "kind": self.kind, "factory": self.factory, "count": len(self),
            "deleted": sorted(self._deleted), "ef_search": self.ef_search,
            "ef_construction": self.ef_construction, "nprobe": self.nprobe, "metric": "inner_product",
        }
        write_json(directory / META_FILE, meta, indent=None)

    @classmethod
    def load(cls, directory: str | Path) -> "VectorIndex":
        import faiss

        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        self = cls(meta["dim"], meta["kind"], ef_search=meta["ef_search"], ef_construction=meta["ef_construction"], nprobe=meta["nprobe"])
        self.factory = meta["factory"]
        self._deleted = set(meta["deleted"])
        if (directory / INDEX_FILE).exists():
            self._index = faiss.read_index(str(directory / INDEX_FILE))
        if (directory / SIDE_FILE).exists():
            with np.load(directory / SIDE_FILE) as z:
                self._side_ids, self._side_vecs = z["ids"], z["vectors"]
        return self

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, factory={self.factory!r}, n={len(self)})"
