"""A segment: an immutable batch of indexed passages stored as a term-major sparse matrix.

Arrays (term-major CSR: the postings of term t are ``docs/weights/tf[indptr[t]:indptr[t+1]]``, docs ascending):
``weights`` are the document side of the score (see ``scoring``), ``tf`` the raw counts kept so ``optimize`` can
reweight with new collection statistics; ``ids`` map local document numbers to passage-store ids. Only ``alive``
(the tombstone mask) ever changes after a segment is built: deleting a passage flips its bit, and the search masks
dead documents before top-k, so a deleted id never comes back, also after save and load.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

_ARRAYS = ("indptr", "docs", "weights", "tf", "ids", "lengths")
TF_MAX = np.iinfo(np.uint16).max  # counts above this saturate tfc anyway; clipping keeps tf at 2 bytes a posting


def count_terms(flat_terms: list[np.ndarray], lengths: np.ndarray, n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Term-major postings (indptr, docs, tf) of documents given as flat term-id arrays (emptied: the caller hands
    them over so their memory is freed as soon as possible) and the documents' lengths.

    Concatenated, the flat ids already *are* a doc-major CSR with duplicates, so nothing needs sorting: scipy's
    csr->csc pass is a stable counting sort (O(tokens)) that leaves each term's documents ascending with repeats
    adjacent, and summing adjacent duplicates gives the term frequencies. Counts are uint16 when no document is
    longer than 65,535 tokens (a count cannot then overflow), which halves the largest temporary array.
    """
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = np.concatenate(flat_terms) if len(flat_terms) != 1 else flat_terms[0]
    flat_terms.clear()
    count_type = np.uint16 if (len(lengths) == 0 or lengths.max() <= TF_MAX) else np.float32
    doc_major = sp.csr_matrix((np.ones(len(flat), dtype=count_type), flat, indptr), shape=(len(lengths), n_terms))
    del flat
    term_major = doc_major.tocsc()
    del doc_major
    term_major.sum_duplicates()
    return term_major.indptr.astype(np.int64), term_major.indices.astype(np.int32, copy=False), term_major.data


@dataclass
class Segment:
    indptr: np.ndarray  # (V_s + 1,) int64
    docs: np.ndarray  # (nnz,) int32 local document numbers
    weights: np.ndarray  # (nnz,) float32
    tf: np.ndarray  # (nnz,) uint16
    ids: np.ndarray  # (D_s,) int64 passage-store ids
    lengths: np.ndarray  # (D_s,) int32 analysed lengths
    alive: np.ndarray  # (D_s,) bool
    stats: dict[str, Any] = field(default_factory=dict)  # collection statistics frozen at build time (avgdl)
    _matrix: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def n_terms(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_docs(self) -> int:
        return len(self.ids)

    @property
    def n_live(self) -> int:
        return int(self.alive.sum())

    def matrix(self, n_terms: int) -> sp.csr_matrix:
        """The (n_terms x D_s) weight matrix. Terms added to the vocabulary after this segment was built have no
        postings here, so the row pointer is just extended: no copy of the postings."""
        m = self._matrix
        if m is None or m.shape[0] != n_terms:
            indptr = self.indptr
            if n_terms > self.n_terms:
                indptr = np.concatenate([indptr, np.full(n_terms - self.n_terms, indptr[-1], dtype=indptr.dtype)])
            m = sp.csr_matrix((self.weights, self.docs, indptr), shape=(n_terms, self.n_docs), copy=False)
            m.has_sorted_indices = True  # scipy would otherwise check all postings
            self._matrix = m
        return m

    def term_counts(self, docs_mask: np.ndarray) -> np.ndarray:
        """For each term, how many of the documents in ``docs_mask`` contain it (O(postings), vectorised)."""
        hit = np.concatenate([[0], np.cumsum(docs_mask[self.docs], dtype=np.int64)])
        return hit[self.indptr[1:]] - hit[self.indptr[:-1]]

    # -- persistence ------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(path / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
        np.save(path / "alive.npy", self.alive)
        (path / "segment.json").write_text(json.dumps({"stats": self.stats, "n_docs": self.n_docs,
                                                       "n_terms": self.n_terms, "nnz": int(len(self.docs))}))

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> "Segment":
        mode = "r" if mmap else None
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode=mode) for name in _ARRAYS}
        alive = np.load(path / "alive.npy")  # small and mutable: in memory
        meta = json.loads((path / "segment.json").read_text())
        _check_shapes(arrays, alive, meta)
        return cls(alive=alive, stats=meta["stats"], **arrays)


def _check_shapes(arrays: dict[str, np.ndarray], alive: np.ndarray, meta: dict) -> None:
    """O(1) checks that the files agree with each other and with ``segment.json``: a damaged or mixed-up array
    must fail here, where the index names the fix, not deep inside a search."""
    for name, a in arrays.items():
        if a.ndim != 1 or a.dtype.kind not in "iuf" or (name in ("indptr", "docs", "ids") and a.dtype.kind == "f"):
            raise ValueError(f"{name}.npy holds {a.dtype} of shape {a.shape}, not a numeric vector")
    n_docs, n_terms, nnz = int(meta["n_docs"]), int(meta["n_terms"]), int(meta["nnz"])
    want = {"ids": n_docs, "lengths": n_docs, "indptr": n_terms + 1, "docs": nnz, "weights": nnz, "tf": nnz}
    for name, n in want.items():
        if len(arrays[name]) != n:
            raise ValueError(f"{name}.npy has {len(arrays[name])} entries, segment.json says {n}")
    if alive.shape != (n_docs,):
        raise ValueError(f"alive.npy has shape {alive.shape}, segment.json says {n_docs} documents")
