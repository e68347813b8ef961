"""Text analysis shared by indexing and querying: normalisation, lowercasing, stopwords, stemming, CJK bigrams."""
from ragtune.text.analyzer import Analyzer, bundled_stopwords, cjk_ngrams

__all__ = ["Analyzer", "bundled_stopwords", "cjk_ngrams"]
