"""The on-disk knowledge graph of an index: entities (names as written, plus aliases), relations, and edges
walkable in both directions.

Files under ``INDEX/graph/``: ``graph.json`` (format version, sources with fingerprints, counts),
``entities.json`` (names as written), ``labels.json`` (entity id -> aliases, e.g. ``rdfs:label``),
``relations.json`` and ``edges.npy`` ((E, 4) int32: subject, relation, object, source). Entity and relation ids
are append-only, so they stay stable across incremental updates; a source's edges are replaced as a whole when
its file changes. The adjacency (CSR over directed steps) is rebuilt in memory on load.

A *step* is ``2 * relation + direction``: direction 0 follows an edge subject -> object, 1 goes back
object -> subject.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ragtune.errors import RagtuneError

GRAPH_DIR = "graph"
GRAPH_JSON = "graph.json"
GRAPH_FILES = ("graph.json", "entities.json", "relations.json", "labels.json", "edges.npy")
FORMAT_VERSION = 1
_CJK_CLASS = "\u1100-\u11ff\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNIT = re.compile(f"[{_CJK_CLASS}]|[^\\W_{_CJK_CLASS}]+")
CJK = re.compile(f"[{_CJK_CLASS}]")


def units(text: str) -> list[str]:
    """Matching units of a name or question: NFKC, lowercase, underscores and punctuation as spaces; words for
    alphabetic scripts, single characters for Chinese, Japanese and Korean."""
    return _UNIT.findall(unicodedata.normalize("NFKC", text).lower())


def norm_name(text: str) -> str:
    """The key names match on: ``Ernest_Augustus_I`` and ``ernest augustus i`` are the same."""
    return " ".join(units(text))


def relation_text(relation: str) -> str:
    """A relation as words: ``__film__cinematographer__film`` -> ``film cinematographer film``."""
    return " ".join(relation.replace("_", " ").split())


def chain_text(step_texts: Sequence[str]) -> str:
    """What the dense scorer reads for a relation chain: ``[nationality of spouse]`` for spouse -> nationality
    (the bracket keeps one chain from being a substring of a longer one, for substring checks of positives)."""
    return "[" + " of ".join(reversed(list(step_texts))) + "]"


@dataclass
class Graph:
    names: list[str] = field(default_factory=list)  # entity id -> name as written (URI for RDF)
    relations: list[str] = field(default_factory=list)
    labels: dict[int, list[str]] = field(default_factory=dict)  # entity id -> aliases / display labels
    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int32))
    sources: dict[str, dict] = field(default_factory=dict)  # source key -> {"id", "fingerprint", "triples"}

    def __post_init__(self) -> None:
        self._entity_ids = {n: i for i, n in enumerate(self.names)}
        self._relation_ids = {r: i for i, r in enumerate(self.relations)}
        self._adj: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.paths = None  # kg.store.PathTable, made by whoever serves paths from this graph

    # -- lookup ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.edges)

    @property
    def n_entities(self) -> int:
        return len(self.names)

    def entity_id(self, name: str) -> int | None:
        return self._entity_ids.get(name)

    def display(self, entity: int) -> str:
        """How an entity is shown: its first label (RDF), else its name as written (a URI by its local name)."""
        labels = self.labels.get(entity)
        if labels:
            return labels[0]
        name = self.names[entity]
        if "://" in name:
            from ragtune.kg.readers import rdf_local_name

            return rdf_local_name(name)
        return name

    def aliases(self, entity: int) -> list[str]:
        return [self.display(entity), self.names[entity], *self.labels.get(entity, [])]

    def step_text(self, step: int) -> str:
        r, back = divmod(step, 2)
        return ("inverse " if back else "") + relation_text(self.relations[r])

    def chain_text(self, steps: Sequence[int]) -> str:
        return chain_text([self.step_text(s) for s in steps])

    def path_text(self, entities: Sequence[int], steps: Sequence[int]) -> str:
        """A readable chain: ``a → spouse → b → nationality → c``; an edge walked backwards shows ``←``."""
        out = [self.display(entities[0])]
        for s, e in zip(steps, entities[1:]):
            r, back = divmod(s, 2)
            arrow = "←" if back else "→"
            out += [arrow, relation_text(self.relations[r]), arrow, self.display(e)]
        return " ".join(out)

    def adjacency(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR over directed steps: for entity e, ``steps[ptr[e]:ptr[e+1]]`` and ``nbrs[...]``, sorted by step."""
        if self._adj is None:
            e = self.edges
            src = np.concatenate([e[:, 0], e[:, 2]]).astype(np.int64)
            dst = np.concatenate([e[:, 2], e[:, 0]]).astype(np.int64)
            step = np.concatenate([2 * e[:, 1], 2 * e[:, 1] + 1]).astype(np.int64)
            order = np.lexsort((dst, step, src))
            ptr = np.zeros(self.n_entities + 1, dtype=np.int64)
            np.add.at(ptr, src + 1, 1)
            self._adj = (np.cumsum(ptr), step[order], dst[order])
        return self._adj

    def neighbours(self, entity: int) -> tuple[np.ndarray, np.ndarray]:
        ptr, steps, nbrs = self.adjacency()
        return steps[ptr[entity]:ptr[entity + 1]], nbrs[ptr[entity]:ptr[entity + 1]]

    def degree(self, entity: int) -> int:
        ptr = self.adjacency()[0]
        return int(ptr[entity + 1] - ptr[entity])

    def has_facts(self, entity: int) -> bool:
        """Whether the entity is the subject of some triple (not only ever an object, as a value is)."""
        steps, _ = self.neighbours(entity)
        return bool((steps % 2 == 0).any())

    # -- building -------------------------------------------------------------------------------------------

    def _entity(self, name: str) -> int:
        i = self._entity_ids.get(name)
        if i is None:
            i = self._entity_ids[name] = len(self.names)
            self.names.append(name)
        return i

    def _relation(self, name: str) -> int:
        i = self._relation_ids.get(name)
        if i is None:
            i = self._relation_ids[name] = len(self.relations)
            self.relations.append(name)
        return i

    def replace_source(self, key: str, fingerprint: str, triples: Iterable[tuple[str, str, str]],
                       labels: dict[str, list[str]] | None = None) -> tuple[int, int]:
        """Swap in the triples of one source file; returns (edges added, edges removed). Duplicates within a
        source are kept once."""
        removed = self.remove_source(key)
        sid = max((s["id"] for s in self.sources.values()), default=-1) + 1
        rows = dict.fromkeys((self._entity(s), self._relation(r), self._entity(o)) for s, r, o in triples)
        for name, names in (labels or {}).items():
            e = self._entity(name)
            known = self.labels.setdefault(e, [])
            known.extend(x for x in names if x not in known)
        new = np.array([(s, r, o, sid) for s, r, o in rows], dtype=np.int32).reshape(-1, 4)
        self.edges = np.concatenate([self.edges, new])
        self.sources[key] = {"id": sid, "fingerprint": fingerprint, "triples": len(new)}
        self._adj = None
        return len(new), removed

    def remove_source(self, key: str) -> int:
        src = self.sources.pop(key, None)
        if src is None:
            return 0
        keep = self.edges[:, 3] != src["id"]
        removed = int((~keep).sum())
        self.edges = self.edges[keep]
        self._adj = None
        return removed

    # -- persistence ----------------------------------------------------------------------------------------

    def save(self, path: Path) -> dict:
        """Write into directory ``path`` (a staging copy: the caller swaps it in); returns the manifest entry."""
        from ragtune.atomic import write_json, write_with

        path.mkdir(parents=True, exist_ok=True)
        def write_edges(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, self.edges)

        write_with(path / "edges.npy", write_edges)
        write_json(path / "entities.json", self.names, indent=None)
        write_json(path / "relations.json", self.relations, indent=None)
        write_json(path / "labels.json", {str(k): v for k, v in self.labels.items()}, indent=None)
        info = {"format_version": FORMAT_VERSION, "triples": len(self.edges), "entities": self.n_entities,
                "relations": len(self.relations)}
        write_json(path / GRAPH_JSON, {**info, "sources": self.sources})
        return info

    @classmethod
    def load(cls, path: Path) -> "Graph":
        meta_file = path / GRAPH_JSON
        if not meta_file.is_file():
            raise RagtuneError(f"no knowledge graph in {path}: add triples with `ragtune index --triples FILE --index DIR`")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            if meta.get("format_version") != FORMAT_VERSION:
                raise RagtuneError(f"knowledge graph in {path} has format version {meta.get('format_version')}, this "
                                   f"ragtune reads {FORMAT_VERSION}: rebuild with `ragtune index --triples ... --rebuild`")
            names = json.loads((path / "entities.json").read_text(encoding="utf-8"))
            relations = json.loads((path / "relations.json").read_text(encoding="utf-8"))
            labels = {int(k): v for k, v in json.loads((path / "labels.json").read_text(encoding="utf-8")).items()}
            edges = np.load(path / "edges.npy")
        except (OSError, ValueError) as e:
            raise RagtuneError(f"knowledge graph in {path} is unreadable ({e}): rebuild with `ragtune index --triples ... --rebuild`") from None
        if edges.ndim != 2 or edges.shape[1] != 4 or len(edges) != meta.get("triples"):
            raise RagtuneError(f"knowledge graph in {path} is inconsistent (edges {edges.shape}, manifest {meta.get('triples')}): rebuild it")
        return cls(names, relations, labels, edges.astype(np.int32), meta.get("sources", {}))
