"""The two records that flow from readers to retrievers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EMPTY_ID = -1  # the passage id of "no passage": fills Hits slots that matched nothing


@dataclass
class Document:
    """A whole source document as a reader produced it, before chunking."""

    id: str
    text: str
    title: str = ""
    source: str = ""  # file path or dataset name; "" when not from a file
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Passage:
    """A retrievable unit: a chunk of one document.

    ``id`` is the integer the passage store assigned; it is stable across incremental re-indexing and never
    reused, and it is the id every retriever and ``Hits`` speaks. ``-1`` means "not stored yet".
    ``start``/``end`` are character offsets of the chunk within ``Document.text``.
    """

    id: int
    doc_id: str
    text: str
    title: str = ""
    source: str = ""
    start: int = 0
    end: int = 0

    @property
    def indexed_text(self) -> str:
        """What retrievers index: the title carries much of a passage's topic (as in DPR and BEIR)."""
        return f"{self.title}\n{self.text}" if self.title else self.text
