"""Paths as passages: a per-process table that gives each (topic entity, relation chain) found by path search
a passage id, and a store that serves those ids next to the index's stored passages.

A path passage groups the paths of one relation chain from one topic entity (a chain can reach several tails:
"children" of a person). Its id is ``PATH_ID_BASE + n`` (far above any passage-store id), its title the topic
entity, its text the chain as the scorer reads it followed by up to ``SHOWN_PATHS`` readable paths::

    [nationality of spouse] frederica → spouse → ernest_augustus_i → nationality → united_kingdom

Ids are stable within a process (training and answering share one table), not across processes; training rows
name a gold path by its chain text (``positive_texts``), which is stable.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ragtune.corpus.types import Passage
from ragtune.kg.graph import Graph

PATH_ID_BASE = 1 << 48
SHOWN_PATHS = 3


def is_path_id(i: int) -> bool:
    return int(i) >= PATH_ID_BASE


@dataclass(frozen=True)
class PathEntry:
    topic: int
    steps: tuple[int, ...]
    paths: tuple[tuple[int, ...], ...]  # entity sequences, topic first (up to the search's max_frontier)

    @property
    def tails(self) -> list[int]:
        return list(dict.fromkeys(p[-1] for p in self.paths))


class PathTable:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._ids: dict[tuple[int, tuple[int, ...]], int] = {}
        self._entries: list[PathEntry] = []
        self._lock = threading.Lock()

    def register(self, topic: int, steps: Sequence[int], paths: Iterable[Sequence[int]]) -> int:
        key = (int(topic), tuple(int(s) for s in steps))
        with self._lock:
            i = self._ids.get(key)
            if i is None:
                i = self._ids[key] = PATH_ID_BASE + len(self._entries)
                self._entries.append(PathEntry(key[0], key[1], tuple(tuple(int(e) for e in p) for p in paths)))
            return i

    def entry(self, i: int) -> PathEntry | None:
        j = int(i) - PATH_ID_BASE
        return self._entries[j] if 0 <= j < len(self._entries) else None

    def chain_text(self, i: int) -> str | None:
        e = self.entry(i)
        return None if e is None else self.graph.chain_text(e.steps)

    def tails(self, i: int) -> list[str]:
        """The tail entities (answers) of a path passage, as displayed; [] for an unknown id."""
        e = self.entry(i)
        return [] if e is None else [self.graph.display(t) for t in e.tails]

    def triples(self, i: int) -> list[tuple[str, str, str]]:
        """The KB triples (subject, relation, object, names as written) along a path passage's paths; [] for an
        unknown id. What knowledge recall counts a retrieved path as holding."""
        e = self.entry(i)
        if e is None:
            return []
        g, out = self.graph, {}
        for path in e.paths:
            for step, a, b in zip(e.steps, path, path[1:]):
                r, back = divmod(step, 2)
                s_, o = (b, a) if back else (a, b)
                out[(g.names[s_], g.relations[r], g.names[o])] = None
        return list(out)

    def passage(self, i: int) -> Passage | None:
        e = self.entry(i)
        if e is None:
            return None
        g = self.graph
        shown = [g.path_text(p, e.steps) for p in e.paths[:SHOWN_PATHS]]
        more = f" (+{len(e.paths) - SHOWN_PATHS} more)" if len(e.paths) > SHOWN_PATHS else ""
        text = f"{g.chain_text(e.steps)} " + "; ".join(shown) + more
        return Passage(int(i), f"kg:{g.names[e.topic]}", text, title=g.display(e.topic), source="kg")


class GraphPassageStore:
    """The index's ``PassageStore`` with path ids resolved by a ``PathTable``; everything else is delegated."""

    def __init__(self, base: Any, table: PathTable) -> None:
        self.base = base
        self.paths = table

    def get(self, ids: Sequence[int]) -> list[Passage | None]:
        ids = [int(i) for i in ids]
        stored = [i for i in ids if not is_path_id(i)]
        found = dict(zip(stored, self.base.get(stored))) if stored else {}
        return [self.paths.passage(i) if is_path_id(i) else found.get(i) for i in ids]

    def tails(self, i: int) -> list[str]:
        return self.paths.tails(i) if is_path_id(i) else []

    def triples(self, i: int) -> list[tuple[str, str, str]]:
        return self.paths.triples(i) if is_path_id(i) else []

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def path_answer(store: Any, row: Sequence[Passage | None]) -> str:
    """``--mode path``: the tail entity of the best path passage in a retrieved row ("" when none is a path)."""
    tails = getattr(store, "tails", None)
    for p in row:
        if p is not None and tails is not None and is_path_id(p.id):
            got = tails(p.id)
            if got:
                return got[0]
    return ""


def path_answers(store: Any, rows: Sequence[Sequence[Passage | None]], doc_logp: Any) -> tuple[list[str], list[float], Any]:
    """``--mode path`` for a batch: answers (the best path's tail), their log p(z|q), and the posterior
    p(z|q,y) ∝ p(z|q) [y is a tail of z] (P(y|q,z) is 1 when the path ends in the answer, else 0)."""
    import torch

    prior = doc_logp.detach().float().cpu()
    tails = getattr(store, "tails", lambda i: [])
    answers, logprobs = [], []
    posts = torch.zeros_like(prior)
    for b, row in enumerate(rows):
        a = path_answer(store, row)
        answers.append(a)
        ends = torch.tensor([bool(a) and p is not None and a in tails(p.id) for p in row] + [False] * (prior.shape[1] - len(row)))
        logprobs.append(float(torch.logsumexp(prior[b][ends], 0)) if ends.any() else float("-inf"))
        if ends.any():
            w = torch.where(ends, prior[b].exp(), torch.zeros(()))
            posts[b] = w / w.sum()
    return answers, logprobs, posts
