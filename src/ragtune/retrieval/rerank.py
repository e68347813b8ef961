"""Second-stage reranking with a cross-encoder (a sequence classifier over ``[CLS] query [SEP] passage``).

Optional: nothing else depends on it, and the model loads on first use. Any
``AutoModelForSequenceClassification`` checkpoint works; with one label its logit is the score (MS MARCO
cross-encoders), with two the logit margin of label 1 over label 0.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import numpy as np

from ragtune.corpus.types import Passage
from ragtune.models.lazy import LazyModel
from ragtune.retrieval.base import EMPTY_ID, Hits, Retriever

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.config import RerankConfig

# Passage texts by id: a mapping, a function of an id list, or anything with ``get(ids)`` (a PassageStore).
TextLookup = Union[Mapping[int, Union[str, Passage]], Callable[[list[int]], Sequence[Union[str, Passage, None]]], Any]


def lookup_texts(lookup: TextLookup, ids: list[int]) -> list[str]:
    if isinstance(lookup, Mapping):
        items: Sequence[Any] = [lookup.get(i) for i in ids]
    elif callable(lookup):
        items = lookup(ids)
    elif hasattr(lookup, "get"):
        items = lookup.get(ids)
    else:
        raise TypeError(f"cannot look passage texts up in {type(lookup).__name__}")
    # A passage deleted since the first stage has no text; it is scored as empty and sinks.
    return [x.indexed_text if isinstance(x, Passage) else (x or "") for x in items]


class Reranker(LazyModel):
    def __init__(self, model: str, top_n: int = 50, batch_size: int = 32, device: str = "cpu", max_length: int = 512) -> None:
        self.model_name = model
        self.top_n = top_n
        self.batch_size = batch_size
        self.device = device
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_config(cls, cfg: "RerankConfig") -> "Reranker":
        if cfg.model is None:
            raise ValueError("rerank.model is not set")
        return cls(cfg.model, top_n=cfg.top_n, batch_size=cfg.batch_size, device=cfg.device)

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ragtune.models.registry import resolve

        path = resolve(self.model_name)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModelForSequenceClassification.from_pretrained(path).eval().to(self.device)

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Relevance of each (query, passage) pair, (n,) float32."""
        import torch

        out = np.empty(len(queries), dtype=np.float32)
        # Longest pairs first so each batch pads little; the order is undone when writing ``out``.
        order = np.argsort([-(len(q) + len(p)) for q, p in zip(queries, passages)], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [queries[i] for i in rows], [passages[i] for i in rows],
                    padding=True, truncation="longest_first", max_length=self.max_length, return_tensors="pt",
                ).to(self.device)
                logits = self.model(**batch).logits.float()
                s = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
                out[rows] = s.cpu().numpy()
        return out

    def rerank(self, queries: Sequence[str], hits: Hits, passages_text_lookup: TextLookup) -> Hits:
        """Reorder each query's first ``top_n`` hits by cross-encoder score.

        Reranked slots carry cross-encoder scores; hits past ``top_n`` keep their first-stage order, with scores
        set below every reranked one so each row still descends.
        """
        n, k = hits.ids.shape
        top = min(self.top_n, k)
        pairs_q, pairs_id, where = [], [], []
        for q in range(n):
            for j in range(top):
                pid = int(hits.ids[q, j])
                if pid != EMPTY_ID:
                    pairs_q.append(queries[q])
                    pairs_id.append(pid)
                    where.append((q, j))
        ce = self.score(pairs_q, lookup_texts(passages_text_lookup, pairs_id)) if pairs_id else np.empty(0, np.float32)
        out = Hits.empty(n, k)
        per_query: list[list[tuple[float, int, int]]] = [[] for _ in range(n)]
        for (q, j), s in zip(where, ce):
            per_query[q].append((float(s), j, int(hits.ids[q, j])))
        for q in range(n):
            ranked = sorted(per_query[q], key=lambda t: (-t[0], t[1]))  # ties keep first-stage order
            for slot, (s, _, pid) in enumerate(ranked):
                out.ids[q, slot], out.scores[q, slot] = pid, s
            floor = ranked[-1][0] if ranked else 0.0
            slot = len(ranked)
            for j in range(top, k):
                if hits.ids[q, j] != EMPTY_ID:
                    out.ids[q, slot], out.scores[q, slot] = hits.ids[q, j], floor - (slot - len(ranked) + 1)
                    slot += 1
        return out


class RerankedRetriever:
    """A ``Retriever``: ``base`` retrieves ``max(k, top_n)`` candidates, ``reranker`` reorders them."""

    def __init__(self, base: Retriever, reranker: Reranker, store_lookup: TextLookup) -> None:
        self.base = base
        self.reranker = reranker
        self.store_lookup = store_lookup

    def search(self, queries: Sequence[str], k: int) -> Hits:
        hits = self.base.search(queries, max(k, self.reranker.top_n))
        out = self.reranker.rerank(queries, hits, self.store_lookup)
        return Hits(out.ids[:, :k].copy(), out.scores[:, :k].copy())

    def __repr__(self) -> str:
        return f"RerankedRetriever({self.base!r}, Reranker({self.reranker.model_name!r}, top_n={self.reranker.top_n}))"


def maybe_rerank(retriever: Retriever, cfg: "RerankConfig", store_lookup: TextLookup) -> Retriever:
    """``retriever`` reordered by the cross-encoder ``cfg.model``, or unchanged when no model is configured."""
    if not cfg.model:
        return retriever
    return RerankedRetriever(retriever, Reranker.from_config(cfg), store_lookup)
