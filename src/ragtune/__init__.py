"""ragtune: retrieval-augmented generation that can be fine-tuned end to end."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.config import Config
    from ragtune.corpus.types import Document, Passage
    from ragtune.rag.model import RAG
    from ragtune.retrieval.base import Hits
    from ragtune.retrieval.index import Index

# Importing ragtune stays cheap: torch and transformers load only when a heavy object is first used.
_LAZY = {
    "Config": "ragtune.config",
    "Document": "ragtune.corpus.types",
    "Passage": "ragtune.corpus.types",
    "Hits": "ragtune.retrieval.base",
    "Index": "ragtune.retrieval.index",
    "RAG": "ragtune.rag.model",
    "RagOutput": "ragtune.rag.output",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ragtune' has no attribute {name!r}")


__all__ = list(_LAZY) + ["__version__"]
