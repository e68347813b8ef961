"""Sparse retrieval: BM25 variants and TF-IDF over a segmented, incrementally updatable sparse index."""
from ragtune.retrieval.sparse.engine import SparseRetriever
from ragtune.retrieval.sparse.retrievers import BM25Retriever, TfidfRetriever
from ragtune.retrieval.sparse.scoring import BM25_VARIANTS, BM25Weighting, TfidfWeighting

__all__ = ["BM25Retriever", "BM25_VARIANTS", "BM25Weighting", "SparseRetriever", "TfidfRetriever", "TfidfWeighting"]
