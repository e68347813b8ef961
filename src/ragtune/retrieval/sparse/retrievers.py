"""The sparse retrievers the registry names: BM25 (five variants) and TF-IDF cosine."""
from __future__ import annotations

from typing import Any

from ragtune.config import AnalyzerConfig, SparseConfig
from ragtune.retrieval.sparse.engine import SparseRetriever
from ragtune.retrieval.sparse.scoring import BM25Weighting, TfidfWeighting
from ragtune.text.analyzer import Analyzer


class BM25Retriever(SparseRetriever):
    """BM25 over ``Passage.indexed_text``; ``SparseConfig.variant`` picks lucene, robertson, bm25+, bm25l or atire."""

    kind = "bm25"

    def __init__(self, sparse_cfg: SparseConfig | None = None, analyzer_cfg: AnalyzerConfig | None = None, **kw: Any):
        self.config = sparse_cfg or SparseConfig()
        c = self.config
        super().__init__(BM25Weighting(c.variant, c.k1, c.b, c.delta), Analyzer(analyzer_cfg or AnalyzerConfig()), **kw)

    def _params(self) -> dict[str, Any]:
        return {**self.weighting.params(), "config": self.config.model_dump()}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any]) -> "BM25Retriever":
        return cls(SparseConfig.model_validate(meta["weighting"]["config"]), AnalyzerConfig.model_validate(meta["analyzer"]))


class TfidfRetriever(SparseRetriever):
    """Cosine similarity of TF-IDF vectors (sublinear tf when ``SparseConfig.tfidf_sublinear``)."""

    kind = "tfidf"

    def __init__(self, sparse_cfg: SparseConfig | None = None, analyzer_cfg: AnalyzerConfig | None = None, **kw: Any):
        self.config = sparse_cfg or SparseConfig()
        super().__init__(TfidfWeighting(self.config.tfidf_sublinear), Analyzer(analyzer_cfg or AnalyzerConfig()), **kw)

    def _params(self) -> dict[str, Any]:
        return {**self.weighting.params(), "config": self.config.model_dump()}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any]) -> "TfidfRetriever":
        return cls(SparseConfig.model_validate(meta["weighting"]["config"]), AnalyzerConfig.model_validate(meta["analyzer"]))
