"""Dense retrieval: ``Encoder`` (transformers), ``VectorIndex`` (FAISS), ``DenseRetriever``.

Names resolve lazily so ``import ragtune.retrieval.dense`` does not import torch, transformers or FAISS.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.retrieval.dense.encoder import Encoder
    from ragtune.retrieval.dense.retriever import DenseRetriever
    from ragtune.retrieval.dense.vector_index import VectorIndex

_LAZY = {
    "Encoder": "ragtune.retrieval.dense.encoder",
    "VectorIndex": "ragtune.retrieval.dense.vector_index",
    "DenseRetriever": "ragtune.retrieval.dense.retriever",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
