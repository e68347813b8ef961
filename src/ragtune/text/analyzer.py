"""The one analyzer shared by indexing and querying: text -> index terms.

Pipeline: Unicode normalisation (NFKC by default, so full-width Latin and compatibility forms match their plain
forms) -> lowercasing -> tokens -> stopwords -> Snowball stemming (PyStemmer). Tokens are runs of two or more
word characters, as in scikit-learn and bm25s, so an English index matches theirs token for token. CJK text has
no spaces, so a run of CJK characters becomes overlapping character bigrams as Lucene's CJKAnalyzer emits them
("信息检索" -> 信息 息检 检索); a lone CJK character stays a unigram. A Chinese question then shares bigrams with
the passage that answers it, with no word segmenter.

The analyzer records itself with ``to_dict()`` so an index manifest can rebuild exactly the same one.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterable, Sequence

from ragtune.config import AnalyzerConfig
from ragtune.errors import RagtuneError

# Han (with extension A and compatibility ideographs), Hiragana, Katakana, Hangul jamo and syllables: the scripts
# Lucene's CJKBigramFilter bigrams by default.
_CJK_CLASS = "\u1100-\u11ff\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CLASS}]")
# Text with CJK: a CJK run, or a run of >= 2 non-CJK word characters (bm25s' \w\w+).
_TOKEN = re.compile(f"[{_CJK_CLASS}]+|[^\\W{_CJK_CLASS}]{{2,}}")
# Other non-ASCII text: bm25s' own pattern, the fastest of the equivalent ones under ``re``.
_WORD = re.compile(r"(?u)\b\w\w+\b")
# ASCII text: mapping every non-word character to a space and splitting is ~2.5x faster than any regex; the
# single-character tokens this leaves are dropped by ``Analyzer.term``, so the result equals ``_WORD``'s.
_ASCII_SPACES = {i: " " for i in range(128) if not (chr(i).isalnum() or chr(i) == "_")}


@lru_cache(maxsize=None)
def bundled_stopwords(name: str) -> frozenset[str]:
    """A stopword list shipped in ``ragtune/text/stopwords/<name>.txt`` ("en" is an alias of "english")."""
    name = {"en": "english"}.get(name, name)
    try:
        text = resources.files("ragtune.text").joinpath("stopwords", f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RagtuneError(f"unknown stopword list {name!r}; use 'en', an explicit list of words, or none") from None
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


def _stemmer(language: str) -> Callable[[str], str]:
    import Stemmer  # PyStemmer: C Snowball stemmers

    try:
        return Stemmer.Stemmer(language).stemWord
    except KeyError:
        raise RagtuneError(
            f"unknown stemmer language {language!r}; choose one of {sorted(Stemmer.algorithms())} or none"
        ) from None


def cjk_ngrams(run: str, bigrams: bool = True) -> list[str]:
    """A run of CJK characters as overlapping bigrams (a lone character stays a unigram), or as unigrams."""
    if not bigrams or len(run) == 1:
        return list(run)
    return [run[i : i + 2] for i in range(len(run) - 1)]


class _TermCache(dict):
    """raw token -> index term ("" for a dropped token). Stemming runs once per distinct token, not per occurrence:
    a corpus has far fewer distinct tokens than tokens, and dict lookups through ``map`` stay in C."""

    def __init__(self, fn: Callable[[str], str]):
        super().__init__()
        self._fn = fn

    def __missing__(self, raw: str) -> str:
        term = self[raw] = self._fn(raw)
        return term


class Analyzer:
    """``analyzer(text) -> list[str]`` index terms; ``analyzer.batch(texts)`` for many texts at once."""

    def __init__(self, config: AnalyzerConfig | None = None, **overrides: Any):
        cfg = config or AnalyzerConfig()
        self.config = cfg.model_copy(update=overrides) if overrides else cfg
        cfg = self.config
        if cfg.stopwords is None:
            self.stopwords: frozenset[str] = frozenset()
        elif isinstance(cfg.stopwords, str):
            self.stopwords = bundled_stopwords(cfg.stopwords)
        else:
            self.stopwords = frozenset(cfg.stopwords)
        self._stem = _stemmer(cfg.stemmer) if cfg.stemmer else None
        self._form = None if cfg.normalize == "none" else cfg.normalize
        self._cache = _TermCache(self._term)

    # -- recording in a manifest ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.config.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Analyzer":
        return cls(AnalyzerConfig.model_validate(data))

    @classmethod
    def from_config(cls, config: AnalyzerConfig) -> "Analyzer":
        return cls(config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Analyzer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Analyzer({self.to_dict()})"

    # -- the pipeline -----------------------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        if self._form is not None and not unicodedata.is_normalized(self._form, text):
            text = unicodedata.normalize(self._form, text)
        return text.lower() if self.config.lowercase else text

    def split(self, text: str) -> list[str]:
        """Candidate tokens of normalised text, CJK runs already cut into bigrams; ``term`` then drops single
        non-CJK characters and stopwords and stems the rest."""
        text = self.normalize(text)
        if text.isascii():
            return text.translate(_ASCII_SPACES).split()
        if _CJK.search(text) is None:
            return _WORD.findall(text)
        tokens = _TOKEN.findall(text)
        out: list[str] = []
        bigrams = self.config.cjk_bigrams
        for tok in tokens:
            if _CJK.match(tok):
                out.extend(cjk_ngrams(tok, bigrams))
            else:
                out.append(tok)
        return out

    def _term(self, raw: str) -> str:
        if len(raw) < 2 and not _CJK.match(raw):  # one letter or digit carries no topic (bm25s' \w\w+ rule)
            return ""
        if raw in self.stopwords:  # before stemming, as Lucene and bm25s do
            return ""
        if self._stem is None or _CJK.match(raw):
            return raw
        return self._stem(raw)

    def term(self, raw: str) -> str:
        """The index term of one raw token, "" when it is dropped (a stopword)."""
        return self._cache[raw]

    def __call__(self, text: str) -> list[str]:
        return list(filter(None, map(self._cache.__getitem__, self.split(text))))

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        get = self._cache.__getitem__
        split = self.split
        return [list(filter(None, map(get, split(t)))) for t in texts]

    def __getstate__(self) -> dict[str, Any]:  # PyStemmer objects do not pickle; rebuild from the config
        return {"config": self.config.model_dump()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(AnalyzerConfig.model_validate(state["config"]))  # type: ignore[misc]


def analyze_all(analyzer: Analyzer, texts: Sequence[str]) -> list[list[str]]:
    """Functional alias of ``analyzer.batch`` for callers that hold an analyzer and a list."""
    return analyzer.batch(texts)
