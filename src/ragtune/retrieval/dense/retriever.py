"""Dense retrieval: an ``Encoder`` for text, a ``VectorIndex`` for passage vectors, store ids throughout."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ragtune.atomic import write_json
from ragtune.config import DenseConfig
from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.retrieval.base import Hits, cap_k
from ragtune.retrieval.dense.encoder import Encoder
from ragtune.retrieval.dense.vector_index import VectorIndex

DENSE_JSON = "dense.json"
ENCODER_DIR = "encoder"  # optional: a fine-tuned encoder saved next to its index
FORMAT_VERSION = 1
PROGRESS_MIN = 1000  # show a progress bar when adding at least this many passages


class DenseRetriever:
    """``IndexedRetriever`` of kind "dense": inner product between query and passage vectors."""

    kind = "dense"

    def __init__(self, cfg: DenseConfig = DenseConfig(), encoder: Encoder | None = None) -> None:
        self.cfg = cfg
        self.encoder = encoder if encoder is not None else Encoder.from_config(cfg)
        self._index: VectorIndex | None = None  # sized by the encoder's dim, so made on first use

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            self._index = VectorIndex(self.encoder.dim, self.cfg.index)
        return self._index

    @index.setter
    def index(self, value: VectorIndex) -> None:
        self._index = value

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)

    # -- following the passage store ----------------------------------------------------------------------

    def add(self, passages: Sequence[Passage]) -> None:
        if not passages:
            return
        if any(p.id < 0 for p in passages):
            raise ValueError("passages must carry passage-store ids (id >= 0) before they are indexed")
        vecs = self.encoder.encode_passages([p.indexed_text for p in passages], progress=len(passages) >= PROGRESS_MIN)
        self.index.add(np.array([p.id for p in passages], dtype=np.int64), vecs)

    def add_vectors(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Index precomputed passage vectors (from a cache or distributed encoding)."""
        self.index.add(ids, vectors)

    def delete(self, ids: Sequence[int]) -> None:
        if self._index is not None:
            self._index.delete(ids)

    def reencode(self, passages: Sequence[Passage], encoder: Encoder | None = None) -> None:
        """Rebuild every vector with the current encoder, or ``encoder`` (a separately trained document side).

        ``passages`` are all live passages; the new index replaces the old one only once it is complete.
        """
        self._index = self.encoded_index(passages, encoder)

    def encoded_index(self, passages: Sequence[Passage], encoder: Encoder | None = None) -> VectorIndex:
        """A new vector index of ``passages`` encoded by ``encoder`` (default: this retriever's)."""
        enc = encoder or self.encoder
        fresh = VectorIndex(enc.dim, self.cfg.index)
        if passages:
            vecs = enc.encode_passages([p.indexed_text for p in passages], progress=len(passages) >= PROGRESS_MIN)
            fresh.add(np.array([p.id for p in passages], dtype=np.int64), vecs)
        return fresh

    # -- search -------------------------------------------------------------------------------------------

    def search(self, queries: Sequence[str], k: int, *, return_vectors: bool = False) -> Hits:
        k = cap_k(k, len(self))
        if self._index is None or len(self._index) == 0:
            return self._maybe_vectors(Hits.empty(len(queries), k), return_vectors)
        return self.search_vectors(self.encoder.encode_queries(list(queries)), k, return_vectors=return_vectors)

    def search_vectors(self, qvecs: np.ndarray, k: int, *, return_vectors: bool = False) -> Hits:
        qvecs = np.asarray(qvecs, dtype=np.float32)
        k = cap_k(k, len(self))
        if self._index is None:
            return self._maybe_vectors(Hits.empty(len(qvecs), k), return_vectors)
        if qvecs.ndim != 2 or qvecs.shape[1] != self._index.dim:
            raise RagtuneError(
                f"query vectors have shape {qvecs.shape} but the dense index holds {self._index.dim}-dim vectors; "
                "was the index built with another encoder?"
            )
        scores, ids = self._index.search(qvecs, k)
        return self._maybe_vectors(Hits(ids, scores), return_vectors)

    def _maybe_vectors(self, hits: Hits, return_vectors: bool) -> Hits:
        if return_vectors:
            hits.vectors = self.passage_vectors(hits.ids)
        return hits

    def passage_vectors(self, ids: np.ndarray) -> np.ndarray:
        """(..., d) float32 stored vectors of ``ids``; zeros for EMPTY_ID."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._index is None:
            return np.zeros(ids.shape + (self.encoder.dim,), dtype=np.float32)
        return self._index.reconstruct(ids)

    # -- persistence --------------------------------------------------------------------------------------

    def save(self, path: Path, *, save_encoder: bool = False) -> None:
        """Vectors and ``dense.json`` (encoder name and settings) into directory ``path``.

        A fine-tuned encoder's weights are not on any path the json can name; pass ``save_encoder=True`` (or
        call ``encoder.save(path / "encoder")`` yourself) to keep them with the index.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self._index is not None:
            self._index.save(path)
        if save_encoder:
            self.encoder.save(path / ENCODER_DIR)
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "encoder": self.encoder.to_dict(),
            "index": self.cfg.index,
            "factory": None if self._index is None else self._index.factory,
            "dim": None if self._index is None else self._index.dim,
            "count": len(self),
            "config": self.cfg.model_dump(),
        }
        write_json(path / DENSE_JSON, meta)

    @classmethod
    def load(cls, path: Path, *, device: str = "cpu", encoder: Encoder | None = None, **_: Any) -> "DenseRetriever":
        """The retriever saved in ``path``; the encoder comes from ``path/encoder`` when saved there."""
        path = Path(path)
        meta_file = path / DENSE_JSON
        if not meta_file.is_file():
            raise RagtuneError(f"no dense index in {path} (missing {DENSE_JSON})")
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise RagtuneError(f"dense index in {path} has format version {meta.get('format_version')}, expected {FORMAT_VERSION}")
        cfg = DenseConfig.model_validate({**meta["config"], "device": device})
        if encoder is None:
            if (path / ENCODER_DIR).is_dir():
                encoder = Encoder.load(path / ENCODER_DIR, device=device)
            else:
                encoder = Encoder.from_dict(meta["encoder"], device=device)
        self = cls(cfg, encoder)
        if meta.get("dim") is not None:
            self._index = VectorIndex.load(path)
        return self

    def __repr__(self) -> str:
        return f"DenseRetriever({self.encoder!r}, index={self._index!r})"
