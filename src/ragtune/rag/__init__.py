"""The RAG model: p(z|q) from retrieval scores, RAG-Sequence / RAG-Token likelihoods and decoders, citations.

Submodules load lazily so ``import ragtune.rag`` stays cheap (``marginals`` needs torch, ``model`` a generator).
"""
from __future__ import annotations

from typing import Any

_LAZY = {"RAG": "ragtune.rag.model", "AnswerStream": "ragtune.rag.output", "RagOutput": "ragtune.rag.output",
         "Citation": "ragtune.rag.output"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ragtune.rag' has no attribute {name!r}")


__all__ = list(_LAZY)
