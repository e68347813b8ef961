"""Triples as a knowledge base: readers, the on-disk graph, entity linking and multi-hop path search.

Paths found in the graph become ``Passage``s (``kg.store``), so every RAG mode and the trainer use them
unchanged; the retriever that scores them is ``ragtune.retrieval.paths.PathRetriever``.
"""
