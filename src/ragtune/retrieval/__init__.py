"""Retrievers behind one protocol: sparse, dense, hybrid, rerank."""
from ragtune.retrieval.base import EMPTY_ID, Hits, IndexedRetriever, Retriever

__all__ = ["EMPTY_ID", "Hits", "IndexedRetriever", "Retriever"]
