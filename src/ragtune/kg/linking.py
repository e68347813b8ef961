"""Entity linking: which KB entities a question mentions.

Two passes over matching units (``graph.units``: words, or single CJK characters):

* exact: every alias, normalised, is a key; the question is scanned left to right and at each position the
  longest alias that matches wins, so "new york city" is one mention, not "new york" plus "city". Ambiguous
  names (one key, several entities) yield all of them with the same score.
* fuzzy: character n-grams (3-grams of the space-padded name; 2-grams for CJK text) weighted by IDF; an entity
  scores the IDF-weighted share of its name's n-grams found in the question, so a mention written differently
  ("Ernst Augustus of Hannover") still finds ``ernest_augustus_i_of_hanover``.

Scores (pure functions below) are in [0, 1]: an exact match gets more the longer its mention is (a short common
word that happens to be an entity name is weaker evidence), plus ``VERBATIM_BONUS`` when the question writes the
name exactly as the KB does; a fuzzy match of an entity not matched exactly gets ``FUZZY_WEIGHT`` x its share.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ragtune.kg.graph import CJK, Graph, norm_name, units

FUZZY_WEIGHT = 0.8
FUZZY_MIN = 0.5  # share of a name's n-gram weight the question must contain
MAX_ALIAS_UNITS = 32
VERBATIM_BONUS = 0.05


@dataclass(frozen=True)
class Link:
    entity: int
    score: float
    mention: str  # the matched question text (normalised) or the fuzzy name
    exact: bool


def exact_score(mention_chars: int) -> float:
    """1 - 0.5 exp(-chars / 8): 4 characters 0.70, 13 characters 0.90, 30 characters 0.99."""
    return 1.0 - 0.5 * math.exp(-mention_chars / 8.0)


def char_ngrams(name: str) -> list[str]:
    """Character n-grams of a normalised name: 2-grams for text with CJK, else 3-grams of `` name ``."""
    if CJK.search(name):
        s = name.replace(" ", "")
        return [s] if len(s) < 2 else [s[i:i + 2] for i in range(len(s) - 1)]
    s = f" {name} "
    return [s[i:i + 3] for i in range(len(s) - 2)]


def containment(name_grams: Sequence[str], question_grams: set[str], idf: dict[str, float]) -> float:
    """IDF-weighted share of a name's n-grams present in the question."""
    total = sum(idf.get(g, 0.0) for g in name_grams)
    if total <= 0:
        return 0.0
    return sum(idf.get(g, 0.0) for g in name_grams if g in question_grams) / total


class EntityLinker:
    """Built once per graph (lazily by ``PathRetriever``); ``link(question)`` returns candidates best first."""

    def __init__(self, graph: Graph, stopwords: frozenset[str] | None = None) -> None:
        from ragtune.text.analyzer import bundled_stopwords

        self.graph = graph
        stop = bundled_stopwords("en") if stopwords is None else stopwords
        self.keys: dict[tuple[str, ...], list[int]] = defaultdict(list)
        names: dict[str, set[int]] = defaultdict(set)
        for e in range(graph.n_entities):
            for alias in dict.fromkeys(graph.aliases(e)):
                key = tuple(units(alias))
                if not key or len(key) > MAX_ALIAS_UNITS:
                    continue
                if len(key) == 1 and (key[0] in stop or (len(key[0]) < 2 and not CJK.search(key[0]))):
                    continue  # "it", "a": an entity so named would be linked in every question
                if e not in self.keys[key]:
                    self.keys[key].append(e)
                names[" ".join(key)].add(e)
        self.max_len = max((len(k) for k in self.keys), default=0)
        # fuzzy: a sparse (names x n-grams) matrix of IDF weights, rows normalised to sum 1
        self._names = list(names)
        self._name_entities = [sorted(names[n]) for n in self._names]
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, n in enumerate(self._names):
            for g in set(char_ngrams(n)):
                rows.append(i)
                cols.append(vocab.setdefault(g, len(vocab)))
        self._vocab = vocab
        df = np.bincount(np.array(cols, dtype=np.int64), minlength=len(vocab)) if cols else np.zeros(0)
        self._idf = np.log1p(len(self._names) / np.maximum(df, 1)).astype(np.float32)
        from scipy.sparse import csr_matrix

        w = self._idf[np.array(cols, dtype=np.int64)] if cols else np.zeros(0, dtype=np.float32)
        m = csr_matrix((w, (rows, cols)), shape=(len(self._names), len(vocab)), dtype=np.float32)
        totals = np.asarray(m.sum(axis=1)).ravel()
        self._matrix = csr_matrix(m.multiply(1.0 / np.maximum(totals, 1e-9)[:, None]))

    def exact(self, question: str) -> list[Link]:
        """Longest-first exact alias matches, left to right."""
        toks = units(question)
        out: dict[int, Link] = {}
        i = 0
        while i < len(toks):
            for n in range(min(self.max_len, len(toks) - i), 0, -1):
                ents = self.keys.get(tuple(toks[i:i + n]))
                if ents:
                    mention = " ".join(toks[i:i + n])
                    chars = len(mention.replace(" ", "")) * (3 if CJK.search(mention) else 1)  # a CJK character carries a word's information
                    for e in ents:
                        # written exactly as the KB writes it (case, underscores): surer than a normalised match
                        verbatim = any(a and len(a) > 1 and a in question for a in (self.graph.names[e], *self.graph.labels.get(e, ())))
                        s = min(1.0, exact_score(chars) + (VERBATIM_BONUS if verbatim else 0.0))
                        if e not in out or out[e].score < s:
                            out[e] = Link(e, s, mention, True)
                    i += n
                    break
            else:
                i += 1
        return sorted(out.values(), key=lambda l: (-l.score, l.entity))

    def fuzzy(self, question: str, top: int = 10) -> list[Link]:
        """Entities whose name's n-grams the question mostly contains (``FUZZY_MIN`` of the IDF weight)."""
        grams = {self._vocab[g] for g in char_ngrams(norm_name(question)) if g in self._vocab}
        if not grams:
            return []
        q = np.zeros(len(self._vocab), dtype=np.float32)
        q[list(grams)] = 1.0
        share = self._matrix @ q
        best = np.argsort(-share, kind="stable")[:top]
        out = []
        for i in best:
            if share[i] < FUZZY_MIN:
                break
            out += [Link(e, FUZZY_WEIGHT * float(share[i]), self._names[i], False) for e in self._name_entities[i]]
        return out

    def link(self, question: str, top: int = 5) -> list[Link]:
        """Exact and fuzzy candidates merged (an entity keeps its best score), best first."""
        best: dict[int, Link] = {l.entity: l for l in self.exact(question)}
        for l in self.fuzzy(question, top=top * 2):  # an exact match keeps its own score
            if l.entity not in best:
                best[l.entity] = l
        return sorted(best.values(), key=lambda l: (-l.score, l.entity))[:top]


def linker_for(graph: Graph) -> EntityLinker:
    """The graph's linker, built once and kept on the graph (the path retriever and chat tracking share it)."""
    linker = getattr(graph, "_linker", None)
    if linker is None:
        linker = graph._linker = EntityLinker(graph)
    return linker
