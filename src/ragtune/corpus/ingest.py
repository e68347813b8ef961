"""Ingestion: bring a ``PassageStore`` in line with files, folders and BEIR corpora.

New files are added, changed files replaced (by content hash, so a touched file is not re-read) and files that
vanished from under the given roots removed. A file or folder that cannot be read is counted, named and
skipped; it never stops the run.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ragtune.config import Config
from ragtune.corpus.types import Document, Passage
from ragtune.errors import RagtuneError

ProgressFn = Callable[[str, int, int | None], None]  # (stage, done, total)


def no_progress(stage: str, done: int, total: int | None) -> None:
    pass


@dataclass
class IngestReport:
    """What an ingestion did, for the faces' summary."""

    files_seen: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    rows_skipped: int = 0  # JSONL/CSV rows without text
    sources_removed: int = 0
    documents: int = 0
    passages_added: int = 0
    passages_removed: int = 0
    passages_total: int = 0

    def skip_reasons(self) -> Counter:
        return Counter(reason for _, reason in self.skipped)

    def skipped_by_reason(self) -> dict[str, list[str]]:
        """Skipped paths grouped by reason, most common reason first."""
        groups: dict[str, list[str]] = {}
        for path, reason in self.skipped:
            groups.setdefault(reason, []).append(path)
        return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


@dataclass
class _Source:
    path: Path
    root: Path
    key: str  # the store's source key: the resolved path
    fingerprint: str
    beir: bool = False


def _collect_sources(paths: Sequence[Path], beir: Sequence[Path], known: dict[str, str],
                     skipped: list[tuple[str, str]]) -> tuple[list[_Source], list[Path]]:
    from ragtune.corpus.files import iter_files_with_roots, resolved
    from ragtune.corpus.store import file_fingerprint

    sources: list[_Source] = []
    roots: list[Path] = []
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise RagtuneError(f"{p} does not exist: give files or folders to index")
        root = resolved(p)
        roots.append(root)
        base = root if root.is_dir() else root.parent
        for f, _ in iter_files_with_roots([p], on_skip=lambda path, why: skipped.append((str(path), why))):
            key = str(resolved(f))
            try:
                fp = file_fingerprint(f, previous=known.get(key))  # same size and mtime: not hashed again
            except OSError as e:  # dangling link, symlink loop, no permission
                skipped.append((str(f), f"unreadable: {e.strerror or e}"))
                continue
            sources.append(_Source(f, base, key, fp))
    for d in beir:
        corpus = d / "corpus.jsonl" if d.is_dir() else d
        if not corpus.exists():
            raise RagtuneError(f"no BEIR corpus at {corpus}: --beir takes a folder holding corpus.jsonl")
        roots.append(corpus.resolve())
        key = str(corpus.resolve())
        sources.append(_Source(corpus, corpus.parent, key, file_fingerprint(corpus, previous=known.get(key)), beir=True))
    return sources, roots


def _under(key: str, roots: Sequence[Path]) -> bool:
    p = Path(key)
    return any(p == r or r in p.parents for r in roots)


def _read(src: _Source, config: Config, stats) -> list[Document]:
    from ragtune.corpus.readers import read_beir_corpus, read_file

    if src.beir:
        return list(read_beir_corpus(src.path))
    # ids are relative to the root the file was found under, so they survive moving the whole folder
    return read_file(src.path, config.corpus, root=src.root, stats=stats)


def _chunk(docs: Sequence[Document], chunk_words: int, overlap: int) -> list[Passage]:
    from ragtune.corpus.chunking import chunk_document

    out: list[Passage] = []
    for d in docs:
        out.extend(chunk_document(d, chunk_words=chunk_words, overlap=overlap))
    return out


def sync_store(store, paths: Sequence[str | Path], beir: Sequence[str | Path], config: Config, report: IngestReport,
               progress: ProgressFn = no_progress) -> tuple[list[Passage], list[int]]:
    """Bring ``store`` in line with the files in one transaction; returns the passages added (with their new ids)
    and the ids removed, for the retrievers to follow."""
    from ragtune.corpus.readers import ReadStats, UnreadableFile
    from ragtune.corpus.store import same_content

    known = store.sources()
    sources, roots = _collect_sources([Path(p) for p in paths], [Path(b) for b in beir], known, report.skipped)
    report.files_seen = len(sources) + len(report.skipped)
    seen = {s.key for s in sources}
    added: list[Passage] = []
    removed: list[int] = []
    stats = ReadStats()
    with store.transaction():  # one commit for the whole run, not one per file
        for key in sorted(known):
            if key not in seen and _under(key, roots):
                removed += store.delete_source(key)
                report.sources_removed += 1
        for i, src in enumerate(sources):
            progress("read", i, len(sources))
            if src.key in known and same_content(known[src.key], src.fingerprint):
                if known[src.key] != src.fingerprint:
                    store.set_fingerprint(src.key, src.fingerprint)  # touched, not changed: remember the new mtime
                report.files_unchanged += 1
                continue
            try:
                docs = _read(src, config, stats)
            except UnreadableFile as e:
                report.skipped.append((str(src.path), e.reason))
                continue
            # BEIR judges whole documents, so its corpora are indexed unchunked
            chunk_words = 0 if src.beir else config.corpus.chunk_words
            passages = _chunk(docs, chunk_words, config.corpus.chunk_overlap)
            if src.key in known:
                removed += store.delete_source(src.key)
            added += store.add(passages, source=src.key, fingerprint=src.fingerprint)
            report.files_read += 1
            report.documents += len(docs)
    progress("read", len(sources), len(sources))
    report.rows_skipped = stats.skipped_rows
    report.passages_added, report.passages_removed = len(added), len(removed)
    report.passages_total = len(store)
    return added, removed
