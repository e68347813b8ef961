"""Cutting documents into overlapping passages of about ``chunk_words`` words, at sentence ends where possible.

Length is measured in "words": a whitespace-delimited token counts as one word, and each CJK character counts as
``1 / cjk_chars_per_word`` of a word, because Chinese and Japanese text has no spaces and a character carries
roughly the information of two thirds of an English word. So 100 words of Chinese text is ~150 characters.
Every passage keeps its character offsets, so ``doc.text[p.start:p.end] == p.text``.
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Iterable, Iterator

from ragtune.config import CorpusConfig
from ragtune.corpus.types import Document, Passage
from ragtune.errors import RagtuneError

CJK_CHARS_PER_WORD = 1.5
# A window ends at the latest sentence end found in its last part; earlier ends would make passages too short.
SENTENCE_END_MIN_FRACTION = 0.5

# CJK punctuation and fullwidth forms, kana, CJK ideographs (+ extension A, compatibility, the supplementary
# planes). Hangul is left out on purpose: Korean separates words with spaces.
_CJK = "\u3001-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff60\U00020000-\U0002ffff"
_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_IS_CJK = re.compile(f"[{_CJK}]")
_SENTENCE_FINAL = re.compile(r"(?:[.!?]+[\"'\u201d\u2019)\]]*|[\u3002\uff01\uff1f])$")
_CLOSERS = set("\"'\u201d\u2019)]\u300d\u300f\uff09\u3011")


@dataclass(frozen=True)
class _Tokens:
    starts: list[int]
    ends: list[int]
    cum: list[float]  # cum[j] = total weight of tokens[:j]
    sentence_end: list[bool]  # token j ends a sentence


def _tokenize(text: str, cjk_chars_per_word: float) -> _Tokens:
    starts: list[int] = []
    ends: list[int] = []
    cum = [0.0]
    final: list[bool] = []
    cjk_weight = 1.0 / cjk_chars_per_word
    for m in _TOKEN.finditer(text):
        tok = m.group()
        starts.append(m.start())
        ends.append(m.end())
        cum.append(cum[-1] + (cjk_weight if _IS_CJK.match(tok) else 1.0))
        is_final = bool(_SENTENCE_FINAL.search(tok))
        # a closing quote right after 。 (「…。」) belongs to that sentence: move the end past it
        if final and final[-1] and tok in _CLOSERS and starts[-1] == ends[-2]:
            final[-1] = False
            is_final = True
        final.append(is_final)
    return _Tokens(starts, ends, cum, final)


def _window_end(t: _Tokens, i: int, budget: float) -> int:
    """Exclusive token index where the window starting at ``i`` ends."""
    n = len(t.starts)
    j = max(bisect_right(t.cum, t.cum[i] + budget + 1e-9) - 1, i + 1)
    if j >= n:
        return n
    min_end = t.cum[i] + SENTENCE_END_MIN_FRACTION * budget
    for e in range(j - 1, i - 1, -1):
        if t.cum[e + 1] < min_end:
            break
        if t.sentence_end[e]:
            return e + 1
    return j  # no sentence end in the window's last part (or one overlong sentence): cut between words


def _next_start(t: _Tokens, i: int, end: int, overlap: float) -> int:
    """First token of the next window: about ``overlap`` words back from ``end``, at a sentence start if one is there."""
    if overlap <= 0:
        return end
    k = bisect_left(t.cum, t.cum[end] - overlap - 1e-9)
    for s in range(max(k, 1), end):
        if t.sentence_end[s - 1]:
            k = s
            break
    return max(k, i + 1)


def chunk_document(
    doc: Document, chunk_words: int = 100, overlap: int = 20, *, cjk_chars_per_word: float = CJK_CHARS_PER_WORD
) -> list[Passage]:
    """Passages (id -1) of one document; ``chunk_words=0`` gives one passage for the whole (stripped) text."""
    if chunk_words < 0 or overlap < 0:
        raise RagtuneError(f"chunk_words ({chunk_words}) and chunk_overlap ({overlap}) must not be negative")
    if chunk_words and overlap >= chunk_words:
        raise RagtuneError(f"chunk_overlap ({overlap}) must be smaller than chunk_words ({chunk_words})")
    t = _tokenize(doc.text, cjk_chars_per_word)
    n = len(t.starts)
    if n == 0:
        # a title-only document (some BEIR corpora have them) is still retrievable through its title
        return [_passage(doc, 0, 0)] if doc.title.strip() else []
    if chunk_words == 0:
        return [_passage(doc, t.starts[0], t.ends[-1])]
    out: list[Passage] = []
    i = 0
    while True:
        end = _window_end(t, i, chunk_words)
        out.append(_passage(doc, t.starts[i], t.ends[end - 1]))
        if end >= n:
            return out
        i = _next_start(t, i, end, overlap)


def _passage(doc: Document, start: int, end: int) -> Passage:
    return Passage(-1, doc.id, doc.text[start:end], title=doc.title, source=doc.source, start=start, end=end)


def chunk_documents(docs: Iterable[Document], cfg: CorpusConfig | None = None) -> Iterator[Passage]:
    """Chunk a stream of documents with the corpus section of a config."""
    cfg = cfg or CorpusConfig()
    for doc in docs:
        yield from chunk_document(doc, cfg.chunk_words, cfg.chunk_overlap)
