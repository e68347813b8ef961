"""``PathRetriever``: knowledge-graph paths as retrieved passages (kind ``paths``).

For each question: link entities (``kg.linking``), beam-expand relation chains from them (``kg.paths``) and score
each chain z by the RAG prior's f(q, z) = E(q) . E(chain_text(z)) (+ optional sparse and link terms). The top k
chains become passages (``kg.store``); ``Hits.vectors`` holds the chain vectors and ``Hits.offsets`` the sparse and
link terms, so a trainer moves the query encoder through the same f(q, z) that ranked the chains.

One encoder reads questions and chains. Chain texts are short and few (a chain is a relation sequence, shared by
every topic entity), so their vectors are computed on demand and cached until the encoder's weights change (a
training step, or a trained encoder put in its place); a trained query encoder therefore scores against chains
it encoded itself.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ragtune.retrieval.base import EMPTY_ID, Hits

KIND = "paths"


class PathRetriever:
    kind = KIND

    def __init__(self, graph: Any, encoder: Any = None, settings: Any = None) -> None:
        from ragtune.kg.paths import SearchSettings
        from ragtune.kg.store import PathTable

        self.graph = graph
        if graph.paths is None:
            graph.paths = PathTable(graph)
        self.table = graph.paths
        self.encoder = encoder  # None: sparse and link scores only
        self.settings = settings or SearchSettings()
        self._linker = None
        self._cache: dict[str, np.ndarray] = {}
        self._cache_key: Any = None

    @property
    def linker(self):
        if self._linker is None:
            from ragtune.kg.linking import linker_for

            self._linker = linker_for(self.graph)
        return self._linker

    # -- chain vectors ----------------------------------------------------------------------------------------

    def _weights_key(self) -> Any:
        """Changes whenever the encoder's weights do: another model, or an optimiser step (in-place updates bump
        each tensor's version counter)."""
        model = self.encoder.model
        return id(model), sum(p._version for p in model.parameters())

    def chain_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) vectors of chain texts, computed once per text while the encoder's weights stay put."""
        key = self._weights_key()
        if key != self._cache_key:
            self._cache, self._cache_key = {}, key
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            for t, v in zip(todo, self.encoder.encode_passages(todo)):
                self._cache[t] = v
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def passage_vectors(self, ids: np.ndarray) -> np.ndarray:
        """(..., d) chain vectors of path ids; zeros for EMPTY_ID and ids this process has not seen."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.shape + (self.encoder.dim,), dtype=np.float32)
        flat = ids.reshape(-1)
        texts = {j: self.table.chain_text(int(i)) for j, i in enumerate(flat) if i != EMPTY_ID}
        texts = {j: t for j, t in texts.items() if t is not None}
        if texts:
            vecs = self.chain_vectors(list(texts.values()))
            view = out.reshape(-1, out.shape[-1])
            for row, v in zip(texts, vecs):
                view[row] = v
        return out

    # -- search -----------------------------------------------------------------------------------------------

    def link(self, question: str, top: int | None = None) -> list:
        return self.linker.link(question, top=top or self.settings.max_topics)

    def _topics(self, query: str) -> list[tuple[int, float]]:
        """Where a question's search starts: the entities a chat turn tracked (``rag.history.ChatQuery.topics``),
        else the question's own linked entities."""
        given = getattr(query, "topics", None)
        if given is not None:
            ids = [(self.graph.entity_id(name), score) for name, score in given]
            return [(e, float(score)) for e, score in ids if e is not None]
        return [(l.entity, l.score) for l in self.link(query) if l.score >= self.settings.min_link]

    def search(self, queries: Sequence[str], k: int, *, return_vectors: bool = False) -> Hits:
        from ragtune.kg.paths import Query, search, top_chains

        s = self.settings
        queries = list(queries)
        qs = [Query(q, self._topics(q), getattr(q, "max_hops", None)) for q in queries]
        g = self.graph
        if self.encoder is not None:
            qvecs = self.encoder.encode_queries(queries)

            def dense(rows: list[int], steps: list[tuple[int, ...]]) -> np.ndarray:
                vecs = self.chain_vectors([g.chain_text(st) for st in steps])
                return np.einsum("nd,nd->n", qvecs[np.asarray(rows, dtype=np.int64)], vecs)
        else:
            def dense(rows: list[int], steps: list[tuple[int, ...]]) -> np.ndarray:
                return np.zeros(len(rows), dtype=np.float32)

        search(g, qs, dense, s)
        hits = Hits.empty(len(queries), k)
        for r, q in enumerate(qs):
            for j, c in enumerate(top_chains(q, k)):
                hits.ids[r, j] = self.table.register(c.topic, c.steps, c.paths.values())
                hits.scores[r, j] = c.score
        if return_vectors and self.encoder is not None:
            hits.vectors = self.passage_vectors(hits.ids)
            # f = dense + w_sparse * sparse + w_link * link: the terms besides E(q) . d are the trained prior's offsets
            dense_score = np.einsum("nd,nkd->nk", qvecs, hits.vectors)
            hits.offsets = np.where(hits.ids != EMPTY_ID, hits.scores - dense_score, 0.0).astype(np.float32)
        return hits

    def __repr__(self) -> str:
        return f"PathRetriever({self.graph.n_entities} entities, {len(self.graph)} triples, {self.settings})"


def make_retriever(index: Any, kind: str, *, device: str | None = None) -> Any:
    """``paths``: the path retriever of an index's graph; ``kg``: paths alone for a triples-only index, else
    paths fused (RRF) with the index's best document retriever, so both kinds of evidence are retrieved."""
    from ragtune.kg.paths import SearchSettings
    from ragtune.retrieval.dense import Encoder

    if kind == KIND:
        cfg = index.config.dense
        if device:
            cfg = cfg.model_copy(update={"device": device})
        stored = index.manifest.get("graph", {}).get("search", {})
        return PathRetriever(index.graph, Encoder.from_config(cfg), SearchSettings(**stored))
    paths = index.retriever(KIND, device=device)
    if not index.kinds:
        return paths
    from ragtune.retrieval.hybrid import HybridRetriever

    docs = index.retriever(index.default_kind(documents=True), device=device)
    fused = HybridRetriever([docs, paths], method="rrf", rrf_k=index.config.hybrid.rrf_k, depth=max(10, index.config.hybrid.depth // 10))
    fused.kind = "kg"
    return fused
