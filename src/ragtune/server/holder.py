"""What the server serves: the index it opened and the RAG models over it, reopened when the index changes.

Each request checks the manifest's (mtime, size, inode) - one ``stat`` - and, when ``ragtune index`` has
swapped in a new version, reopens the index and rebuilds the RAG models around the generator already loaded.
Requests in flight keep the objects they started with.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from ragtune.retrieval.index import MANIFEST, Index


def _stamp(path: Path) -> tuple | None:
    try:
        st = os.stat(path / MANIFEST)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ModelHolder:
    """The live ``Index`` and one ``RAG`` per retriever kind, sharing one generator.

    ``rag_factory(retriever, generator)`` builds a RAG (default ``RAG.from_index``); ``retriever`` is None for
    the index's configured one, ``generator`` None for the first RAG built (it loads the model).
    """

    def __init__(self, index_dir: str | Path, *, device: str | None = None, rag_factory: Callable[..., Any] | None = None,
                 backend: str | None = None, dtype: str | None = None):
        self.index_dir = Path(index_dir)
        self.device = device
        self.backend = backend  # the generator's: torch or ctranslate2 (None: the index's [generator] backend)
        self.dtype = dtype  # the generator's weights (None: the index's [generator] dtype)
        self._factory = rag_factory
        self._lock = threading.RLock()
        self._stamp = _stamp(self.index_dir)
        self.index = Index.open(self.index_dir)
        self._config()  # a bad dtype fails at start (one line from the CLI), not on the first answer
        self._rags: dict[str | None, Any] = {}
        self.generator: Any = None
        self.loaded = False
        self.reloads = 0

    def refresh(self) -> None:
        """Reopen the index (and drop the RAG models over it) when its manifest changed since it was opened."""
        stamp = _stamp(self.index_dir)
        if stamp is None or stamp == self._stamp:
            return
        with self._lock:
            if _stamp(self.index_dir) == self._stamp:
                return
            self._stamp = _stamp(self.index_dir)
            self.index = Index.open(self.index_dir)  # the old one stays usable by requests that hold it
            self._rags = {}
            self.reloads += 1

    def rag(self, retriever: str | None = None) -> Any:
        """The RAG answering with ``retriever`` (None: the configured one), built on first use."""
        with self._lock:
            if retriever not in self._rags:
                self._rags[retriever] = self._build(retriever)
            return self._rags[retriever]

    def _build(self, retriever: str | None) -> Any:
        if self._factory is not None:
            rag = self._factory(retriever, self.generator)
        else:
            from ragtune.rag.model import RAG

            rag = RAG.from_index(self.index_dir, retriever=retriever, device=self.device or "cpu", generator=self.generator,
                                 backend=self.backend, config=self._config())
        gen = getattr(rag, "generator", None)
        if self.generator is None and gen is not None:
            self.generator = gen
            getattr(gen, "model", None)  # loads the weights now, not in the middle of a batch
        self.loaded = True
        return rag

    def _config(self) -> Any:
        """The index's config with this server's generator overrides (None: the index's own, unchanged)."""
        return self.index.config.updated(generator={"dtype": self.dtype}) if self.dtype else None

    def count_tokens(self, text: str) -> int:
        tok = getattr(self.generator, "tokenizer", None)
        if tok is None:
            return len(text.split())
        return len(tok(text, add_special_tokens=False)["input_ids"])
