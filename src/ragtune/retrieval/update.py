"""Writing an index: create it or update it incrementally, safely against crashes and against other writers.

One writer at a time: an exclusive ``fcntl`` lock on ``.NAME.lock`` beside the index, held for the whole update
and released by the kernel if the process dies; a second writer waits (saying so) or fails at once. Readers
never take it. The update is made on a staging copy (``.NAME.staging-PID``) and swapped in by two renames, so
an interruption at any point leaves the previous index usable; staging copies of dead processes are removed.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ragtune import __version__
from ragtune.atomic import recover_dir, replace_dir, write_json
from ragtune.config import Config
from ragtune.corpus.ingest import IngestReport, ProgressFn, no_progress, sync_store
from ragtune.errors import RagtuneError
from ragtune.retrieval import registry
from ragtune.retrieval.index import FORMAT_VERSION, MANIFEST, STORE, Index, load_part

ENCODING_DIR = "encoding"  # Ray encoding workers write vectors here (in the staging copy; removed before the swap)


@dataclass
class IndexReport(IngestReport):
    """What an ``update`` did: the ingestion, then the retrievers built."""

    retrievers: list[str] = field(default_factory=list)
    seconds: float = 0.0


def lock_path(index_dir: Path) -> Path:
    return index_dir.with_name(f".{index_dir.name}.lock")


@contextmanager
def writer_lock(index_dir: Path, *, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the index's writer lock. Busy: ``wait`` blocks (after ``on_wait(message)``), else a ``RagtuneError``."""
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(index_dir), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            busy = f"another ragtune process (pid {holder}) is updating the index at {index_dir}"
            if not wait:
                raise RagtuneError(f"{busy}; wait for it to finish, or rerun with --wait") from None
            if on_wait is not None:
                on_wait(f"{busy}; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_staging(index_dir: Path) -> int:
    """Remove the staging copies of writers that died (each is a full copy of the store); returns how many.
    Called under the writer lock, so no live writer of ours owns one, but a pid still running is left alone."""
    n = 0
    for d in index_dir.parent.glob(f".{index_dir.name}.staging-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n


def update(
    index_dir: str | Path,
    paths: Sequence[str | Path] = (),
    *,
    beir: Sequence[str | Path] = (),
    retrievers: Sequence[str] = ("bm25",),
    config: Config | None = None,
    rebuild: bool = False,
    optimize: bool = False,
    wait: bool | None = None,
    on_wait: Callable[[str], None] | None = None,
    progress: ProgressFn = no_progress,
    shards: int | None = None,
    ray: str | None = None,
) -> IndexReport:
    """Create or incrementally update the index at ``index_dir`` from files, folders and BEIR corpora.

    New files are added, changed files replaced and files that vanished from under the given roots removed;
    sources under other roots stay. Retrievers named in ``retrievers`` that the index lacks are built over all
    its passages. The manifest's configuration wins over ``config`` for an existing index (its analyzer and
    encoder must not change under it), except on ``rebuild``. ``wait`` (default ``[index] wait`` of the config)
    decides what happens when another process is updating the same index. ``shards`` > 1 splits the passages
    into that many shards (``ragtune.distributed.shards``; None keeps the index's count); ``ray`` (an address or
    "local") encodes dense passages on a pool of Ray actors.
    """
    index_dir = Path(index_dir)
    wait = (config or Config()).index.wait if wait is None else wait
    with writer_lock(index_dir, wait=wait, on_wait=on_wait):
        remove_stale_staging(index_dir)
        return _update_locked(index_dir, paths, beir, retrievers, config, rebuild, optimize, progress, shards, ray)


def _update_locked(index_dir: Path, paths, beir, retrievers, config: Config | None, rebuild: bool, optimize: bool,
                   progress: ProgressFn, shards: int | None = None, ray: str | None = None) -> IndexReport:
    from ragtune.corpus.store import PassageStore, file_fingerprint
    from ragtune.distributed import shards as sharding

    t0 = time.perf_counter()
    recover_dir(index_dir)
    report = IndexReport()
    existing = (index_dir / MANIFEST).exists() and not rebuild
    if existing:
        old = Index.open(index_dir)  # verifies the store: damage must not be copied and re-checksummed
        manifest = old.manifest
        config = old.config if config is None else _merge_frozen(old.config, config, old.kinds)
        old.close()
    else:
        config = config or Config()
        manifest = {}
    built = list(manifest.get("retrievers", {}))
    kinds = list(dict.fromkeys(built + (registry.expand(list(retrievers), config) if retrievers else [])))
    if not kinds:
        raise RagtuneError("no retriever chosen: pass --retriever bm25|tfidf|dense|hybrid|rescore")
    old_shards = sharding.shard_count(manifest)
    n_shards = old_shards if shards is None else int(shards)
    if n_shards < 1:
        raise RagtuneError(f"--shards must be at least 1, got {n_shards}")
    shard_sizes: list[int] = []

    staging = stage(index_dir, existing)
    try:
        store = load_part(index_dir, STORE, lambda: PassageStore(staging / STORE))
        added, removed = sync_store(store, paths, beir, config, report, progress)
        if report.passages_total == 0:
            where = ", ".join(str(p) for p in [*paths, *beir]) or "(nothing given)"
            raise RagtuneError(
                f"no passages to index in {where}: give folders or files (.txt .md .html .json .jsonl .csv .pdf) "
                f"or --beir DIR" + (f"; {len(report.skipped)} file(s) were skipped" if report.skipped else "")
            )
        for kind in kinds:
            progress(f"index {kind}", 0, None)
            merge = optimize
            r = None
            if kind in built:
                r = load_part(index_dir, f"the {kind} retriever ({kind}/)",
                              lambda: sharding.load_merged(staging, kind, old_shards) if old_shards > 1
                              else registry.load(kind, staging / kind))
            if r is not None:
                if removed:
                    r.delete(removed)
                if added:
                    _add(r, added, ray, staging / ENCODING_DIR)
            else:
                r = registry.create(kind, config)
                batches = 0
                for batch in store.iter_passages(batch_size=50_000):
                    _add(r, batch, ray, staging / ENCODING_DIR)
                    batches += 1
                merge = merge or batches > 1  # one segment, so corpus statistics are exact from the start
            if merge and hasattr(r, "optimize"):
                r.optimize()
            if n_shards > 1:
                shard_sizes = sharding.write_shards(r, staging, kind, n_shards)
            else:
                _save_retriever(r, staging / kind)
            progress(f"index {kind}", 1, 1)
        shutil.rmtree(staging / ENCODING_DIR, ignore_errors=True)
        if n_shards == 1:
            sharding.remove_shards(staging)
        n_sources = len(store.sources())
        store.checkpoint()
        store.close()
        write_json(staging / MANIFEST, {
            "format_version": FORMAT_VERSION,
            "ragtune_version": __version__,
            "created": manifest.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "analyzer": config.analyzer.model_dump(),
            "retrievers": {k: _retriever_info(k, config) for k in kinds},
            "counts": {"passages": report.passages_total, "sources": n_sources},
            "checksums": {**{k: v for k, v in manifest.get("checksums", {}).items() if k.startswith("graph/")},
                          STORE: file_fingerprint(staging / STORE)},
            "config": config.model_dump(),
            **({"graph": manifest["graph"]} if "graph" in manifest else {}),  # triples (ragtune.kg.ingest) stay
            **({"shards": {"count": n_shards, "assign": "id % count", "passages": shard_sizes}} if n_shards > 1 else {}),
        })
        replace_dir(staging, index_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.retrievers = kinds
    report.seconds = time.perf_counter() - t0
    return report


def _add(r, passages, ray: str | None, spill_dir: Path | None = None) -> None:
    """``r.add(passages)``; with ``ray``, dense passages are encoded on a pool of Ray actors first, which write the
    vectors into ``spill_dir`` (the staging directory: storage the shard actors already share)."""
    if ray and getattr(r, "kind", None) == "dense":
        from ragtune.distributed.encoding import add_encoded

        add_encoded(r, passages, ray, spill_dir)
    else:
        r.add(passages)


def stage(index_dir: Path, existing: bool) -> Path:
    """A fresh staging directory for an update of ``index_dir`` by this process: a copy of the index when it
    exists (``_stage_copy``), else empty. The caller holds the writer lock and swaps it in with ``replace_dir``."""
    staging = index_dir.with_name(f".{index_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    if existing:
        _stage_copy(index_dir, staging)
    else:
        staging.mkdir(parents=True)
    return staging


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
