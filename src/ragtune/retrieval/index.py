"""An index directory, read: its manifest, passage store and one folder per retriever, each loaded on first use.

Writing (``update``) lives in ``ragtune.retrieval.update``; it stages a copy and swaps it in by two renames, so
a crash leaves either the old or the new index, and ``Index.open`` finishes an interrupted swap. Every part that
fails to load (a damaged manifest, store or retriever file) is one ``IndexFormatError`` naming the part and
``--rebuild``; the store is verified against the fingerprint the manifest recorded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ragtune.atomic import recover_dir
from ragtune.config import Config, RerankConfig
from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.retrieval import registry
from ragtune.retrieval.base import Retriever

T = TypeVar("T")

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE = "passages.sqlite"


class IndexFormatError(RagtuneError):
    pass


def rebuild_hint(path: Path) -> str:
    return f"rebuild it with `ragtune index ... --index {path} --rebuild`"


def load_part(index_path: Path, part: str, load: Callable[[], T]) -> T:
    """``load()``, with any failure but a user's own (a ``RagtuneError``) or an interruption turned into one
    ``IndexFormatError`` that names the damaged part: the one place every command meets a broken index."""
    try:
        return load()
    except RagtuneError:
        raise
    except Exception as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise IndexFormatError(f"index at {index_path}: {part} is damaged or unreadable ({reason}); "
                               f"{rebuild_hint(index_path)}") from e


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(index_path: Path, name: str, recorded: str) -> None:
    """Check ``name`` against the manifest. Fingerprints (``size:mtime:sha1``) are cheap: the hash is computed
    only when size or mtime changed. Indexes written before fingerprints recorded a bare SHA-256."""
    from ragtune.corpus.store import file_fingerprint, same_content

    path = index_path / name
    if not path.is_file():
        raise IndexFormatError(f"index at {index_path}: {name} is missing; {rebuild_hint(index_path)}")
    if ":" in recorded:
        ok = same_content(file_fingerprint(path, previous=recorded), recorded)
    else:
        ok = sha256(path) == recorded
    if not ok:
        raise IndexFormatError(f"index at {index_path}: {name} does not match the checksum the manifest recorded "
                               f"(changed or damaged since it was written); {rebuild_hint(index_path)}")


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
        self._retrievers: dict[tuple, Retriever] = {}  # (kind, device[, the [hybrid] settings of a combination])

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> "Index":
        """Open the index at ``path``; ``verify`` checks the passage store against the manifest (a stat, and a
        hash only when the file's size or time changed)."""
        path = Path(path)
        recover_dir(path)
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            raise RagtuneError(f"no index at {path}: build one with `ragtune index PATH... --index {path}`")
        manifest = load_part(path, MANIFEST, lambda: json.loads(manifest_path.read_text(encoding="utf-8")))
        if not isinstance(manifest, dict):
            raise IndexFormatError(f"index at {path}: {MANIFEST} is not a JSON object; {rebuild_hint(path)}")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"index at {path} has format version {version}, this ragtune reads version {FORMAT_VERSION}: "
                f"{rebuild_hint(path)}"
            )
        if not isinstance(manifest.get("retrievers"), dict) or not isinstance(manifest.get("checksums", {}), dict):
            raise IndexFormatError(f"index at {path}: {MANIFEST} lacks its retriever list; {rebuild_hint(path)}")
        index = load_part(path, f"{MANIFEST} (its config)", lambda: cls(path, manifest))
        if verify:
            for name, recorded in manifest.get("checksums", {}).items():
                verify_file(path, name, str(recorded))
        return index

    @property
    def kinds(self) -> list[str]:
        return list(self.manifest.get("retrievers", {}))

    @property
    def store(self):
        if self._store is None:
            from ragtune.corpus.store import PassageStore

            self._store = load_part(self.path, STORE, lambda: PassageStore(self.path / STORE, readonly=True))
            if self.has_graph:  # knowledge-graph paths are passages too (ragtune.kg.store)
                from ragtune.kg.store import GraphPassageStore, PathTable

                if self.graph.paths is None:
                    self.graph.paths = PathTable(self.graph)
                self._store = GraphPassageStore(self._store, self.graph.paths)
        return self._store

    @property
    def has_graph(self) -> bool:
        return "graph" in self.manifest

    @property
    def graph(self):
        """The knowledge graph of an index built with ``--triples`` (``ragtune.kg.graph.Graph``), loaded once."""
        if getattr(self, "_graph", None) is None:
            from ragtune.kg.graph import GRAPH_DIR, Graph

            self._graph = load_part(self.path, f"the knowledge graph ({GRAPH_DIR}/)", lambda: Graph.load(self.path / GRAPH_DIR))
        return self._graph

    def default_kind(self, documents: bool = False) -> str:
        kinds = self.kinds
        if self.has_graph and not documents:
            return "kg"  # paths, fused with the documents' retriever when there are documents
        if not kinds:
            raise IndexFormatError(f"index at {self.path} lists no retriever; {rebuild_hint(self.path)}")
        if "bm25" in kinds and "dense" in kinds and set(self.config.hybrid.retrievers) <= set(kinds):
            return "hybrid"
        return kinds[0]

    def retriever(self, kind: str | None = None, *, device: str | None = None, config: Config | None = None) -> Retriever:
        """The retriever ``kind`` (bm25, tfidf, dense, hybrid, rescore, paths, kg); ``None`` picks the index's best.

        ``config``'s ``[hybrid]`` (default: the index's own) sets how hybrid and rescore combine the indexed
        retrievers: a query-time choice, so a run's config may change it."""
        kind = kind or self.default_kind()
        cfg = config or self.config
        fused = kind in registry.FUSED_KINDS
        key = (kind, device, cfg.hybrid.model_dump_json()) if fused else (kind, device)
        if key not in self._retrievers and kind in ("paths", "kg"):
            from ragtune.retrieval.paths import make_retriever

            self._retrievers[key] = make_retriever(self, kind, device=device)
        if key not in self._retrievers:
            needed = registry.expand([kind], cfg)
            missing = [k for k in needed if k not in self.kinds]
            if missing:
                raise RagtuneError(
                    f"index at {self.path} has no {'/'.join(missing)} retriever (it has {', '.join(self.kinds)}): "
                    f"add it with `ragtune index ... --index {self.path} --retriever {kind}`"
                )
            if fused:
                self._retrievers[key] = registry.fused(kind, [self.retriever(k, device=device) for k in needed], cfg)
            elif "shards" in self.manifest or _ray_requested():  # shards, or any index served by Ray actors
                from ragtune.distributed import open_retriever

                self._retrievers[key] = open_retriever(self, kind, device=device)
            else:
                self._retrievers[key] = load_part(self.path, f"the {kind} retriever ({kind}/)",
                                                  lambda: registry.load(kind, self.path / kind, device=device))
        return self._retrievers[key]

    def search(self, queries: Sequence[str], k: int = 10, retriever: str | None = None, *, device: str | None = None,
               rerank: RerankConfig | None = None) -> list[list["ScoredPassage"]]:
        """The top-k passages of each query, resolved from the store, best first; ``rerank`` names a cross-encoder."""
        from ragtune.retrieval.rerank import maybe_rerank

        base = self.retriever(retriever, device=device)
        hits = (maybe_rerank(base, rerank, self.store) if rerank else base).search(list(queries), k)
        return [[ScoredPassage(p, float(s)) for p, s in zip(row, scores) if p is not None]
                for row, scores in zip(hits.passages(self.store), hits.scores)]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ray_requested() -> bool:
    """Whether this process was told to search through Ray (``--ray``: ``ragtune.distributed.use_ray``)."""
    import os

    return bool(os.environ.get("RAGTUNE_RAY"))


def __getattr__(name: str):
    # ``update`` lived here before reading and writing were split; old imports keep working
    if name in ("update", "IndexReport"):
        from ragtune.retrieval import update as writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
