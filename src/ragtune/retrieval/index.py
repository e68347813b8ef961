"""An index directory: manifest, passage store and one folder per retriever, updated incrementally and atomically.

Updates are made on a staging copy next to the index and swapped in by two renames, so a crash at any point
leaves either the old or the new index, never a half-written one (``Index.open`` finishes an interrupted swap).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from ragtune import __version__
from ragtune.config import Config, RerankConfig
from ragtune.corpus.types import Document, Passage
from ragtune.errors import RagtuneError
from ragtune.retrieval import registry
from ragtune.retrieval.base import Retriever

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.corpus.readers import ReadStats

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE = "passages.sqlite"


class IndexFormatError(RagtuneError):
    pass


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _checksum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _old_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _recover(path: Path) -> None:
    """Finish a swap a crash interrupted: the old index is back if the new one never arrived."""
    old = _old_name(path)
    if old.exists():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)


@dataclass
class ScoredPassage:
    passage: Passage
    score: float

    def to_dict(self) -> dict:
        p = self.passage
        return {"id": p.id, "score": self.score, "title": p.title, "text": p.text, "doc_id": p.doc_id}


class Index:
    """A read view of an index directory; retrievers and the store load on first use."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.config = Config.model_validate(manifest.get("config", {}))
        self._store = None
        self._retrievers: dict[tuple[str, str | None], Retriever] = {}

    @classmethod
    def open(cls, path: str | Path) -> "Index":
        path = Path(path)
        _recover(path)
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            raise RagtuneError(f"no index at {path}: build one with `ragtune index PATH... --index {path}`")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise IndexFormatError(f"index manifest {manifest_path} is unreadable ({e}): rebuild with `ragtune index ... --index {path} --rebuild`")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"index at {path} has format version {version}, this ragtune reads version {FORMAT_VERSION}: "
                f"rebuild it with `ragtune index ... --index {path} --rebuild`"
            )
        return cls(path, manifest)

    @property
    def kinds(self) -> list[str]:
        return list(self.manifest.get("retrievers", {}))

    @property
    def store(self):
        if self._store is None:
            from ragtune.corpus.store import PassageStore

            self._store = PassageStore(self.path / STORE, readonly=True)
        return self._store

    def default_kind(self) -> str:
        kinds = self.kinds
        if "bm25" in kinds and "dense" in kinds and set(self.config.hybrid.retrievers) <= set(kinds):
            return "hybrid"
        return kinds[0]

    def retriever(self, kind: str | None = None, *, device: str | None = None) -> Retriever:
        """The retriever ``kind`` (bm25, tfidf, dense, hybrid); ``None`` picks the index's best available."""
        kind = kind or self.default_kind()
        key = (kind, device)
        if key not in self._retrievers:
            needed = registry.expand([kind], self.config)
            missing = [k for k in needed if k not in self.kinds]
            if missing:
                raise RagtuneError(
                    f"index at {self.path} has no {'/'.join(missing)} retriever (it has {', '.join(self.kinds)}): "
                    f"add it with `ragtune index ... --index {self.path} --retriever {kind}`"
                )
            if kind == "hybrid":
                self._retrievers[key] = registry.hybrid([self.retriever(k, device=device) for k in needed], self.config)
            else:
                self._retrievers[key] = registry.load(kind, self.path / kind, device=device)
        return self._retrievers[key]

    def passages(self, ids: Iterable[int]) -> list[Passage | None]:
        return self.store.get(list(ids))

    def search(self, queries: Sequence[str], k: int = 10, retriever: str | None = None, *, device: str | None = None,
               rerank: RerankConfig | None = None) -> list[list["ScoredPassage"]]:
        """The top-k passages of each query, resolved from the store, best first; ``rerank`` names a cross-encoder."""
        from ragtune.retrieval.rerank import maybe_rerank

        base = self.retriever(retriever, device=device)
        hits = (maybe_rerank(base, rerank, self.store) if rerank else base).search(list(queries), k)
        out = []
        for row in range(len(hits)):
            pairs = hits.row(row)
            found = self.passages(i for i, _ in pairs)
            out.append([ScoredPassage(p, s) for (_, s), p in zip(pairs, found) if p is not None])
        return out

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class IndexReport:
    """What an ``update`` did, for the CLI's summary."""

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
    retrievers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def skip_reasons(self) -> Counter:
        return Counter(reason for _, reason in self.skipped)


ProgressFn = Callable[[str, int, int | None], None]  # (stage, done, total)


def _noop(stage: str, done: int, total: int | None) -> None:
    pass


@dataclass
class _Source:
    path: Path
    root: Path
    key: str  # the store's source key: the resolved path
    fingerprint: str
    beir: bool = False


def _collect_sources(paths: Sequence[Path], beir: Sequence[Path], known: dict[str, str]) -> tuple[list[_Source], list[Path], list[tuple[str, str]]]:
    from ragtune.corpus.readers import iter_files
    from ragtune.corpus.store import file_fingerprint

    sources: list[_Source] = []
    roots: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for p in paths:
        if not p.exists():
            raise RagtuneError(f"{p} does not exist: give files or folders to index")
        root = p.resolve()
        roots.append(root)
        for f in iter_files([p]):
            key = str(f.resolve())
            try:
                fp = file_fingerprint(f, previous=known.get(key))  # same size and mtime: not hashed again
            except OSError as e:
                skipped.append((str(f), f"unreadable: {e.strerror or e}"))
                continue
            sources.append(_Source(f, root if root.is_dir() else root.parent, key, fp))
    for d in beir:
        corpus = d / "corpus.jsonl" if d.is_dir() else d
        if not corpus.exists():
            raise RagtuneError(f"no BEIR corpus at {corpus}: --beir takes a folder holding corpus.jsonl")
        roots.append(corpus.resolve())
        key = str(corpus.resolve())
        sources.append(_Source(corpus, corpus.parent, key, file_fingerprint(corpus, previous=known.get(key)), beir=True))
    return sources, roots, skipped


def _under(key: str, roots: Sequence[Path]) -> bool:
    p = Path(key)
    return any(p == r or r in p.parents for r in roots)


def _read(src: _Source, config: Config, stats: "ReadStats") -> list[Document]:
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


def update(
    index_dir: str | Path,
    paths: Sequence[str | Path] = (),
    *,
    beir: Sequence[str | Path] = (),
    retrievers: Sequence[str] = ("bm25",),
    config: Config | None = None,
    rebuild: bool = False,
    optimize: bool = False,
    progress: ProgressFn = _noop,
) -> IndexReport:
    """Create or incrementally update the index at ``index_dir`` from files, folders and BEIR corpora.

    New files are added, changed files replaced and files that vanished from under the given roots removed;
    sources under other roots stay. Retrievers named in ``retrievers`` that the index lacks are built over all
    its passages. The manifest's configuration wins over ``config`` for an existing index (its analyzer and
    encoder must not change under it), except on ``rebuild``.
    """
    from ragtune.corpus.store import PassageStore

    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    _recover(index_dir)
    report = IndexReport()
    existing = (index_dir / MANIFEST).exists() and not rebuild
    if existing:
        old = Index.open(index_dir)
        manifest = old.manifest
        config = old.config if config is None else _merge_frozen(old.config, config, old.kinds)
        old.close()
    else:
        config = config or Config()
        manifest = {}
    built = list(manifest.get("retrievers", {}))
    kinds = list(dict.fromkeys(built + (registry.expand(list(retrievers), config) if retrievers else [])))
    if not kinds:
        raise RagtuneError("no retriever chosen: pass --retriever bm25|tfidf|dense|hybrid")

    staging = index_dir.with_name(f".{index_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    if existing:
        _stage_copy(index_dir, staging)
    else:
        staging.mkdir(parents=True)
    try:
        store = PassageStore(staging / STORE)
        added, removed = _sync_store(store, paths, beir, config, report, progress)
        if report.passages_total == 0:
            where = ", ".join(str(p) for p in [*paths, *beir]) or "(nothing given)"
            raise RagtuneError(
                f"no passages to index in {where}: give folders or files (.txt .md .html .json .jsonl .csv .pdf) "
                f"or --beir DIR" + (f"; {len(report.skipped)} file(s) were skipped" if report.skipped else "")
            )
        for kind in kinds:
            progress(f"index {kind}", 0, None)
            merge = optimize
            if kind in built:
                r = registry.load(kind, staging / kind)
                if removed:
                    r.delete(removed)
                if added:
                    r.add(added)
            else:
                r = registry.create(kind, config)
                batches = 0
                for batch in store.iter_passages(batch_size=50_000):
                    r.add(batch)
                    batches += 1
                merge = merge or batches > 1  # one segment, so corpus statistics are exact from the start
            if merge and hasattr(r, "optimize"):
                r.optimize()
            _save_retriever(r, staging / kind)
            progress(f"index {kind}", 1, 1)
        n_sources = len(store.sources())
        store.checkpoint()
        store.close()
        _write_json_atomic(staging / MANIFEST, {
            "format_version": FORMAT_VERSION,
            "ragtune_version": __version__,
            "created": manifest.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "analyzer": config.analyzer.model_dump(),
            "retrievers": {k: _retriever_info(k, config) for k in kinds},
            "counts": {"passages": report.passages_total, "sources": n_sources},
            "checksums": {STORE: _checksum(staging / STORE)},
            "config": config.model_dump(),
        })
        _swap(staging, index_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.retrievers = kinds
    report.seconds = time.perf_counter() - t0
    return report


def _sync_store(store, paths, beir, config: Config, report: IndexReport, progress: ProgressFn) -> tuple[list[Passage], list[int]]:
    """Bring the store in line with the files: returns the passages added (with ids) and the ids removed."""
    from ragtune.corpus.readers import ReadStats, UnreadableFile
    from ragtune.corpus.store import same_content

    known = store.sources()
    sources, roots, report.skipped = _collect_sources([Path(p) for p in paths], [Path(b) for b in beir], known)
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
                report.skipped.append((str(src.path), str(e)))
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


def _stage_copy(index_dir: Path, staging: Path) -> None:
    """The staging copy of an index: the store is copied (SQLite changes it in place); retriever files are
    hard-linked where the file system allows, since retrievers never rewrite a saved file (``_save_retriever``
    writes a new folder), so staging costs little even for a large index."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(index_dir, staging, copy_function=link_or_copy, ignore=shutil.ignore_patterns(STORE + "*"))
    for f in index_dir.glob(STORE + "*"):
        shutil.copy2(f, staging / f.name)


def _save_retriever(r, out: Path) -> None:
    """Save beside the old files and then replace them: a loaded retriever may still map the old ones."""
    fresh = out.with_name(out.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    r.save(fresh)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(fresh, out)


def _retriever_info(kind: str, config: Config) -> dict:
    if kind in ("bm25", "tfidf"):
        return {"sparse": config.sparse.model_dump()}
    return {"encoder": config.dense.encoder, "index": config.dense.index}


def _merge_frozen(stored: Config, requested: Config, built: Sequence[str]) -> Config:
    """Keep what the index was built with where changing it would silently mix incompatible passages."""
    data = requested.model_dump()
    frozen = ["analyzer", "sparse", "corpus"] + (["dense"] if "dense" in built else [])
    for section in frozen:
        data[section] = getattr(stored, section).model_dump()
    return Config.model_validate(data)


def _swap(staging: Path, target: Path) -> None:
    old = _old_name(target)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
