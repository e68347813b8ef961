"""Multi-hop path search over the graph: beam expansion of relation chains from the linked entities.

A *chain* is a topic entity plus a sequence of steps (relation, direction); it reaches a set of tail entities.
Search runs hop by hop for a whole batch of questions: every chain in a question's beam is extended by each step
leaving its tails, the new chains are scored against the question (``score_chains`` below: the caller's dense
scores plus optional sparse and link terms), and the best ``beam`` survive to the next hop. Chains of every
length up to ``max_hops`` compete for the final top k.

Walks are non-backtracking (an edge is never taken straight back to the entity just left), so
"spouse, inverse spouse" reaches other spouses' spouses but not the topic itself again.

Bounds, per question and hop: at most ``beam`` chains are extended, each from at most ``max_frontier`` tail
entities, reading at most ``max_edges`` adjacency entries in all (a hub entity's edges beyond that are not read),
and at most ``max_candidates`` new chains are scored. So a 3-hop search costs O(max_hops x max_edges) time and
O(max_hops x max_candidates x max_frontier) memory per question, whatever the degree of the entities.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ragtune.kg.graph import Graph, units

CHAIN_STOPWORDS = frozenset({"of", "inverse"})


@dataclass(frozen=True)
class SearchSettings:
    max_hops: int = 3
    beam: int = 32
    max_frontier: int = 64
    max_edges: int = 20_000
    max_candidates: int = 4_096
    max_topics: int = 3
    min_link: float = 0.3
    w_sparse: float = 0.0
    w_link: float = 1.0


def parse_settings(pairs: Sequence[str]) -> dict:
    """``["max_hops=2", "w_sparse=0.5"]`` -> ``{"max_hops": 2, "w_sparse": 0.5}``, typed as ``SearchSettings``'s
    fields; a bad name or value raises ``RagtuneError`` naming the choices."""
    from dataclasses import fields

    from ragtune.errors import RagtuneError

    kinds = {f.name: type(f.default) for f in fields(SearchSettings)}
    out: dict = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in kinds:
            raise RagtuneError(f"bad path search setting {pair!r}: use NAME=VALUE with NAME one of {', '.join(kinds)}")
        try:
            out[name] = kinds[name](value.strip())
        except ValueError:
            what = "an integer" if kinds[name] is int else "a number"
            raise RagtuneError(f"bad path search setting {pair!r}: {name} takes {what}") from None
    return out


@dataclass
class Chain:
    topic: int
    steps: tuple[int, ...]
    paths: dict[int, tuple[int, ...]]  # tail entity -> one entity sequence reaching it (topic first)
    link: float  # the topic's linking score
    score: float = 0.0


@dataclass
class Query:
    """One question's search state."""

    question: str
    topics: list[tuple[int, float]]  # (entity, link score)
    max_hops: int | None = None  # this question's own bound below the settings' (a chat turn's: ``[chat] max_hops``)
    found: list[Chain] = field(default_factory=list)
    beam: list[Chain] = field(default_factory=list)


def sparse_overlap(question_units: set[str], steps_units: Sequence[Sequence[str]]) -> float:
    """Lexical evidence for a chain: m / n_steps + 0.1 m, where m sums, over the chain's distinct relations, the
    share of each relation's units found in the question (``of``/``inverse`` ignored). A relation counts in full
    when the question names all of it and in part when it names some: a Chinese relation is matched character by
    character, so "游玩时间" in the question picks 建议游玩时间 (4 of 6) over 开放时间 (2 of 4), where a single shared
    unit would tie them. A step whose relation the question never names, or a relation walked twice, lowers it;
    of two chains the question covers fully, the longer (explaining more of the question) wins: "nationality of
    spouse" over "spouse" and over "nationality, inverse nationality"."""
    if not steps_units:
        return 0.0
    relations = {frozenset(set(u) - CHAIN_STOPWORDS) for u in steps_units}
    m = sum(len(words & question_units) / len(words) for words in relations if words)
    return m / len(steps_units) + 0.1 * m


def score_chains(dense: np.ndarray, sparse: np.ndarray, link: np.ndarray, *, w_sparse: float, w_link: float) -> np.ndarray:
    """f(q, z) = dense + w_sparse * sparse + w_link * link, elementwise over candidate chains."""
    return dense + w_sparse * sparse + w_link * link


def extend(graph: Graph, chain: Chain, s: SearchSettings, budget: list[int], out: dict[tuple, Chain]) -> None:
    """Add to ``out`` every one-step extension of ``chain`` (keyed by (topic, steps)), spending ``budget[0]``
    adjacency entries."""
    for tail, path in list(chain.paths.items())[: s.max_frontier]:
        if budget[0] <= 0:
            return
        steps, nbrs = graph.neighbours(tail)
        if len(steps) > budget[0]:
            steps, nbrs = steps[: budget[0]], nbrs[: budget[0]]
        budget[0] -= len(steps)
        back = (chain.steps[-1] ^ 1, path[-2]) if chain.steps else None
        for st, nb in zip(steps.tolist(), nbrs.tolist()):
            if (st, nb) == back:
                continue  # non-backtracking: never walk the edge just taken straight back
            key = (chain.topic, chain.steps + (st,))
            c = out.get(key)
            if c is None:
                if len(out) >= s.max_candidates:
                    continue
                c = out[key] = Chain(chain.topic, key[1], {}, chain.link)
            if nb not in c.paths and len(c.paths) < s.max_frontier:
                c.paths[nb] = path + (nb,)


def search(graph: Graph, queries: list[Query], dense_fn: Callable[[list[int], list[tuple[int, ...]]], np.ndarray],
           s: SearchSettings) -> None:
    """Fill each query's ``found`` with scored chains of 1..max_hops steps.

    ``dense_fn(question_rows, steps_list)`` returns the dense score of each (question, chain) pair; it is called
    once per hop for the whole batch, so the caller can encode every new chain in one pass.
    """
    qunits = [set(units(q.question)) for q in queries]
    for q in queries:
        q.beam = [Chain(e, (), {e: (e,)}, link) for e, link in q.topics]
        q.found = []
    for _hop in range(s.max_hops):
        rows: list[int] = []
        cands: list[Chain] = []
        for r, q in enumerate(queries):
            new: dict[tuple, Chain] = {}
            budget = [s.max_edges]
            if q.max_hops is not None and _hop >= q.max_hops:
                continue
            for c in q.beam:
                extend(graph, c, s, budget, new)
            rows += [r] * len(new)
            cands += list(new.values())
        if not cands:
            break
        dense = np.asarray(dense_fn(rows, [c.steps for c in cands]), dtype=np.float32)
        sparse = np.array([sparse_overlap(qunits[r], [units(graph.step_text(st)) for st in c.steps]) for r, c in zip(rows, cands)],
                          dtype=np.float32) if s.w_sparse else np.zeros(len(cands), dtype=np.float32)
        link = np.array([c.link for c in cands], dtype=np.float32)
        scores = score_chains(dense, sparse, link, w_sparse=s.w_sparse, w_link=s.w_link)
        per: list[list[Chain]] = [[] for _ in queries]
        for r, c, sc in zip(rows, cands, scores.tolist()):
            c.score = sc
            per[r].append(c)
        for q, chains in zip(queries, per):
            chains.sort(key=lambda c: (-c.score, c.topic, c.steps))
            q.found += chains
            q.beam = chains[: s.beam]


def top_chains(query: Query, k: int) -> list[Chain]:
    """The k best chains of a searched query, ties broken deterministically."""
    return sorted(query.found, key=lambda c: (-c.score, len(c.steps), c.topic, c.steps))[:k]
