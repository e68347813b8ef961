"""Documents, passages, readers, chunking and the on-disk passage store."""
from ragtune.corpus.store import PassageStore, file_fingerprint, same_content
from ragtune.corpus.types import Document, Passage

__all__ = ["Document", "Passage", "PassageStore", "file_fingerprint", "same_content"]
