"""Documents, passages, finding files, readers, chunking and the on-disk passage store."""
from ragtune.corpus.beir import BeirDataset, load_beir
from ragtune.corpus.chunking import chunk_document, chunk_documents
from ragtune.corpus.files import iter_files, iter_files_with_roots
from ragtune.corpus.readers import ReadStats, UnreadableFile, read_beir_corpus, read_file, read_paths
from ragtune.corpus.squad import QARecord, SquadData, load_qa_jsonl, load_squad, open_book_split
from ragtune.corpus.store import PassageStore, file_fingerprint, same_content
from ragtune.corpus.types import Document, Passage

__all__ = [
    "BeirDataset",
    "QARecord",
    "SquadData",
    "load_beir",
    "load_qa_jsonl",
    "load_squad",
    "open_book_split",
    "Document",
    "Passage",
    "PassageStore",
    "ReadStats",
    "UnreadableFile",
    "chunk_document",
    "chunk_documents",
    "file_fingerprint",
    "iter_files",
    "iter_files_with_roots",
    "read_beir_corpus",
    "read_file",
    "read_paths",
    "same_content",
]
