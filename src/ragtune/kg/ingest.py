"""``update_triples``: add, replace or remove triples files in an index directory, incrementally and atomically.

Same discipline as document indexing (``retrieval.index.update``): the update is made on a staging copy of the
index and swapped in, so a crash leaves the old index; unchanged files (same fingerprint) are not re-read; a file
that vanished from under a folder given again is removed. Malformed lines are skipped and reported with their
file and line number; the rest of the file is indexed.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ragtune.atomic import write_json
from ragtune.errors import RagtuneError
from ragtune.kg.graph import GRAPH_DIR, GRAPH_FILES, Graph
from ragtune.kg.readers import Problem, read_triples

TRIPLE_SUFFIXES = (".tsv", ".txt", ".nt", ".ttl", ".n3", ".jsonl", ".json")


@dataclass
class TriplesReport:
    files_read: int = 0
    files_unchanged: int = 0
    sources_removed: int = 0
    triples_added: int = 0
    triples_removed: int = 0
    triples_total: int = 0
    entities: int = 0
    relations: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0


def _files(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    files, roots = [], []
    for p in paths:
        if not p.exists():
            raise RagtuneError(f"{p} does not exist: give triples files (.tsv .txt .nt .ttl .jsonl .json) or folders of them")
        roots.append(p.resolve())
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TRIPLE_SUFFIXES)
        else:
            files.append(p)
    return files, roots


def update_triples(index_dir: str | Path, paths: Sequence[str | Path], *, sep: str | None = None,
                   rebuild: bool = False, config: Any = None, search: dict | None = None) -> TriplesReport:
    """Bring the graph of ``index_dir`` in line with the triples files (and folders) in ``paths``; creates the
    index (with an empty passage store) when there is none. ``config`` (a ``Config``; its ``dense`` section names
    the path scorer's encoder) is recorded for a new index; ``search`` (``kg.paths.SearchSettings`` fields: hops,
    beam, weights) is recorded with the graph and used by every later search."""
    from ragtune.retrieval.update import remove_stale_staging, writer_lock

    index_dir = Path(index_dir)
    with writer_lock(index_dir):
        remove_stale_staging(index_dir)
        return _update_locked(index_dir, paths, sep, rebuild, config, search)


def _update_locked(index_dir: Path, paths: Sequence[str | Path], sep: str | None, rebuild: bool, config: Any,
                   search: dict | None) -> TriplesReport:
    from ragtune.corpus.store import PassageStore, file_fingerprint, same_content
    from ragtune.retrieval import index as ix
    from ragtune.atomic import recover_dir, replace_dir
    from ragtune.retrieval.update import stage

    t0 = time.perf_counter()
    recover_dir(index_dir)
    files, roots = _files([Path(p) for p in paths])
    existing = (index_dir / ix.MANIFEST).exists()
    manifest: dict = {}
    if existing:
        with ix.Index.open(index_dir) as old:
            manifest = dict(old.manifest)
    staging = stage(index_dir, existing)
    report = TriplesReport()
    try:
        gdir = staging / GRAPH_DIR
        graph = Graph() if rebuild or not (gdir / "graph.json").exists() else Graph.load(gdir)
        seen = set()
        for f in files:
            key = str(f.resolve())
            seen.add(key)
            known = graph.sources.get(key)
            fp = file_fingerprint(f, previous=known["fingerprint"] if known else None)
            if known and same_content(known["fingerprint"], fp):
                known["fingerprint"] = fp  # touched, not changed: remember the new mtime
                report.files_unchanged += 1
                continue
            got = read_triples(f, sep)
            report.problems += got.problems
            if not got.triples and known:  # unreadable now: keep what was indexed from it
                continue
            added, removed = graph.replace_source(key, fp, got.triples, got.labels)
            report.files_read += 1
            report.triples_added += added
            report.triples_removed += removed
        for key in [k for k in graph.sources if k not in seen and any(Path(k) == r or r in Path(k).parents for r in roots)]:
            report.triples_removed += graph.remove_source(key)
            report.sources_removed += 1
        if len(graph) == 0:
            where = ", ".join(str(p) for p in paths)
            raise RagtuneError(f"no triples to index in {where}" + (f"; {len(report.problems)} malformed line(s), the first "
                                                                    f"{report.problems[0]}" if report.problems else ""))
        info = graph.save(gdir)
        store = PassageStore(staging / ix.STORE)  # a triples-only index still has a (possibly empty) passage store
        n_passages = len(store)
        store.checkpoint()
        store.close()
        checksums = {**manifest.get("checksums", {}), ix.STORE: file_fingerprint(staging / ix.STORE)}
        checksums.update({f"{GRAPH_DIR}/{name}": file_fingerprint(gdir / name) for name in GRAPH_FILES})
        write_json(staging / ix.MANIFEST, {
            **manifest,
            "format_version": ix.FORMAT_VERSION,
            "ragtune_version": manifest.get("ragtune_version") or _version(),
            "created": manifest.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "retrievers": manifest.get("retrievers", {}),
            "counts": {**manifest.get("counts", {"passages": n_passages, "sources": 0})},
            "checksums": checksums,  # Index.open verifies each
            "config": manifest.get("config") or (config.model_dump() if config is not None else _default_config()),
            "graph": {**info, "search": _search(manifest, search)},
        })
        replace_dir(staging, index_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.triples_total, report.entities, report.relations = len(graph), graph.n_entities, len(graph.relations)
    report.seconds = time.perf_counter() - t0
    return report


def _search(manifest: dict, search: dict | None) -> dict:
    from dataclasses import fields

    from ragtune.kg.paths import SearchSettings

    known = {f.name for f in fields(SearchSettings)}
    bad = sorted(set(search or {}) - known)
    if bad:
        raise RagtuneError(f"unknown path search setting(s) {', '.join(bad)}: choose from {', '.join(sorted(known))}")
    return {**manifest.get("graph", {}).get("search", {}), **(search or {})}


def _default_config() -> dict:
    from ragtune.config import Config

    return Config().model_dump()


def _version() -> str:
    from ragtune import __version__

    return __version__
