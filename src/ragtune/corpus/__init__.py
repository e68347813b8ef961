"""Documents, passages, readers, chunking and the on-disk passage store."""
from ragtune.corpus.types import Document, Passage

__all__ = ["Document", "Passage"]
