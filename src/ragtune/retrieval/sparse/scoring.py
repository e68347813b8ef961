"""Term weighting as small pure functions over numpy arrays, selected by name.

BM25 follows Kamphuis et al., "Which BM25 do you mean?" (ECIR 2020), as bm25s does, so scores agree with bm25s
to float precision. A BM25 score is sum over query terms t of idf(t) * tfc(tf_td, |d|):

    variant    idf(df, N)                           tfc(tf, |d|), K = k1 * (1 - b + b * |d| / avgdl)
    lucene     log(1 + (N - df + 0.5)/(df + 0.5))   tf / (tf + K)
    robertson  log((N - df + 0.5)/(df + 0.5)), >= 0 tf / (tf + K)
    atire      log(N / df)                          (k1 + 1) tf / (tf + K)
    bm25l      log((N + 1)/(df + 0.5))              (k1 + 1)(c + delta) / (k1 + c + delta), c = tf / (1 - b + b |d|/avgdl)
    bm25+      log((N + 1)/df)                      (k1 + 1) tf / (tf + K) + delta

(Lucene's and Robertson's tfc drop the constant factor k1 + 1: it does not change a ranking.)

The index factors a score into a query side and a document side. idf depends on the whole collection, so it is
applied at query time from live document frequencies and stays exact as segments come and go; the document side
stores tfc(tf) - tfc(0) (nonzero only where the term occurs; tfc(0) is nonzero for bm25l and bm25+), frozen with
the avgdl of its segment. The tfc(0) part is the same for every document, so it is added back per query as
sum_t idf(t) * tfc(0).

TF-IDF is the cosine of sublinear-tf (1 + log tf) x smooth-idf (log((1 + N)/(1 + df)) + 1) vectors, as
scikit-learn's TfidfVectorizer(sublinear_tf=True) computes them. The document side stores tf'(t,d) / |d|, the
query side tf'(t,q) idf(t)^2 / |q|; the document norm |d| uses the idf of its segment's build time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Callable

import numpy as np

IdfFn = Callable[[np.ndarray, float], np.ndarray]
TfcFn = Callable[[np.ndarray, np.ndarray, float, float, float, float], np.ndarray]


# -- BM25 idf(df, N) ------------------------------------------------------------------------------------------
def idf_lucene(df: np.ndarray, n: float) -> np.ndarray:
    return np.log1p((n - df + 0.5) / (df + 0.5))


def idf_robertson(df: np.ndarray, n: float) -> np.ndarray:
    # Terms in more than half the documents would score negative; clamp as bm25s and Lucene-era systems do.
    return np.log(np.maximum((n - df + 0.5) / (df + 0.5), 1.0))


def idf_atire(df: np.ndarray, n: float) -> np.ndarray:
    return np.log(n / df)


def idf_bm25l(df: np.ndarray, n: float) -> np.ndarray:
    return np.log((n + 1) / (df + 0.5))


def idf_bm25plus(df: np.ndarray, n: float) -> np.ndarray:
    return np.log((n + 1) / df)


# -- BM25 tfc(tf, |d|) ----------------------------------------------------------------------------------------
def _norm(dl: np.ndarray, avgdl: float, b: float) -> np.ndarray:
    """1 - b + b * dl / avgdl, as a fresh array built in place: these run over every posting of an index, so
    each avoided temporary is one posting-sized array less at the peak."""
    out = np.multiply(dl, b / avgdl)
    out += 1 - b
    return out


def _saturate(tf: np.ndarray, dl: np.ndarray, avgdl: float, k1: float, b: float) -> np.ndarray:
    """tf / (tf + k1 * norm(dl))."""
    den = _norm(dl, avgdl, b)
    den *= k1
    den += tf
    return np.divide(tf, den, out=den)


def tfc_lucene(tf: np.ndarray, dl: np.ndarray, avgdl: float, k1: float, b: float, delta: float) -> np.ndarray:
    return _saturate(tf, dl, avgdl, k1, b)


tfc_robertson = tfc_lucene


def tfc_atire(tf: np.ndarray, dl: np.ndarray, avgdl: float, k1: float, b: float, delta: float) -> np.ndarray:
    out = _saturate(tf, dl, avgdl, k1, b)
    out *= k1 + 1
    return out


def tfc_bm25l(tf: np.ndarray, dl: np.ndarray, avgdl: float, k1: float, b: float, delta: float) -> np.ndarray:
    c = np.divide(tf, _norm(dl, avgdl, b))
    c += delta  # c + delta
    return (k1 + 1) * c / (k1 + c)


def tfc_bm25plus(tf: np.ndarray, dl: np.ndarray, avgdl: float, k1: float, b: float, delta: float) -> np.ndarray:
    out = tfc_atire(tf, dl, avgdl, k1, b, delta)
    out += delta
    return out


BM25_VARIANTS: dict[str, tuple[IdfFn, TfcFn]] = {
    "lucene": (idf_lucene, tfc_lucene),
    "robertson": (idf_robertson, tfc_robertson),
    "atire": (idf_atire, tfc_atire),
    "bm25l": (idf_bm25l, tfc_bm25l),
    "bm25+": (idf_bm25plus, tfc_bm25plus),
}


# -- TF-IDF ---------------------------------------------------------------------------------------------------
def idf_smooth(df: np.ndarray, n: float) -> np.ndarray:
    return np.log((1 + n) / (1 + df)) + 1


def tf_sublinear(tf: np.ndarray) -> np.ndarray:
    return 1 + np.log(tf)


def _safe_idf(fn: IdfFn, df: np.ndarray, n: float) -> np.ndarray:
    """idf where df > 0, else 0: a term whose every document was deleted matches nothing."""
    df = np.asarray(df, dtype=np.float64)
    out = np.zeros_like(df)
    live = df > 0
    if n > 0 and live.any():
        out[live] = fn(df[live], float(n))
    return out


# -- weightings: parameters bound to the pure functions, the seam the segmented index calls ---------------------
@dataclass(frozen=True)
class BM25Weighting:
    variant: str = "lucene"
    k1: float = 1.2
    b: float = 0.75
    delta: float = 0.5

    def __post_init__(self) -> None:
        if self.variant not in BM25_VARIANTS:
            raise ValueError(f"unknown BM25 variant {self.variant!r}; choose one of {sorted(BM25_VARIANTS)}")

    def params(self) -> dict:
        return {"weighting": "bm25", "variant": self.variant, "k1": self.k1, "b": self.b, "delta": self.delta}

    @cached_property
    def _floor(self) -> float:
        tfc = BM25_VARIANTS[self.variant][1]
        return float(tfc(np.zeros(1), np.ones(1), 1.0, self.k1, self.b, self.delta)[0])

    def floor(self) -> float:
        """tfc(0): what a document that lacks a term still gets from it (nonzero for bm25l and bm25+)."""
        return self._floor

    def doc_weights(self, tf: np.ndarray, docs: np.ndarray, indptr: np.ndarray, lengths: np.ndarray,
                    df: np.ndarray, n_docs: int, avgdl: float) -> np.ndarray:
        tfc = BM25_VARIANTS[self.variant][1]
        w = tfc(tf.astype(np.float32), lengths.astype(np.float32)[docs], np.float32(avgdl), np.float32(self.k1),
                np.float32(self.b), np.float32(self.delta))
        if self._floor:
            w -= np.float32(self._floor)
        return w.astype(np.float32, copy=False)

    def query_weights(self, qtf: np.ndarray, df: np.ndarray, rows: np.ndarray, n_queries: int,
                      n_docs: int) -> tuple[np.ndarray, np.ndarray]:
        w = qtf * _safe_idf(BM25_VARIANTS[self.variant][0], df, n_docs)
        floor = self.floor()
        const = np.bincount(rows, w * floor, minlength=n_queries) if floor else np.zeros(n_queries)
        return w.astype(np.float32), const.astype(np.float32)


@dataclass(frozen=True)
class TfidfWeighting:
    sublinear: bool = True

    def params(self) -> dict:
        return {"weighting": "tfidf", **asdict(self)}

    def _tf(self, tf: np.ndarray) -> np.ndarray:
        tf = np.asarray(tf, dtype=np.float64)
        return tf_sublinear(tf) if self.sublinear else tf

    def doc_weights(self, tf: np.ndarray, docs: np.ndarray, indptr: np.ndarray, lengths: np.ndarray,
                    df: np.ndarray, n_docs: int, avgdl: float) -> np.ndarray:
        terms = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        s = self._tf(tf)
        idf = _safe_idf(idf_smooth, df[: len(indptr) - 1], n_docs)[terms]
        norms = np.sqrt(np.bincount(docs, (s * idf) ** 2, minlength=len(lengths)))
        return (s / np.where(norms > 0, norms, 1.0)[docs]).astype(np.float32)

    def query_weights(self, qtf: np.ndarray, df: np.ndarray, rows: np.ndarray, n_queries: int,
                      n_docs: int) -> tuple[np.ndarray, np.ndarray]:
        idf = _safe_idf(idf_smooth, df, n_docs) * (df > 0)
        s = self._tf(qtf) * idf
        norms = np.sqrt(np.bincount(rows, s**2, minlength=n_queries))
        w = s * idf / np.where(norms > 0, norms, 1.0)[rows]
        return w.astype(np.float32), np.zeros(n_queries, dtype=np.float32)
