from __future__ import annotations

import random

import pytest

from ragtune.config import CorpusConfig
from ragtune.corpus.chunking import chunk_document, chunk_documents
from ragtune.corpus.types import Document
from ragtune.errors import RagtuneError


def _doc(text: str, title: str = "T") -> Document:
    return Document("d1", text, title=title, source="/x/d1.txt")


def _sentences(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    return "  ".join(" ".join(rng.choices(words, k=rng.randint(4, 12))).capitalize() + "." for _ in range(n))


def test_offsets_round_trip_and_fields_copied() -> None:
    doc = _doc(_sentences(60))
    passages = chunk_document(doc, chunk_words=30, overlap=8)
    assert len(passages) > 3
    for p in passages:
        assert doc.text[p.start : p.end] == p.text
        assert (p.id, p.doc_id, p.title, p.source) == (-1, "d1", "T", "/x/d1.txt")
        assert len(p.text.split()) <= 30
    assert passages[0].start == 0 and passages[-1].end == len(doc.text)
    # every word is covered by some passage
    covered = set()
    for p in passages:
        covered.update(range(p.start, p.end))
    assert all(i in covered for i, c in enumerate(doc.text) if not c.isspace())


def test_windows_overlap_and_advance() -> None:
    doc = _doc(" ".join(f"w{i}" for i in range(100)))  # no sentence ends: cut purely by words
    passages = chunk_document(doc, chunk_words=20, overlap=5)
    words = [p.text.split() for p in passages]
    assert words[0] == [f"w{i}" for i in range(20)]
    assert words[1][0] == "w15"  # 5 words of overlap
    for a, b in zip(passages, passages[1:]):
        assert a.start < b.start < a.end < b.end
    assert chunk_document(doc, chunk_words=20, overlap=0)[1].text.split()[0] == "w20"


def test_chunks_end_at_sentence_boundaries() -> None:
    doc = _doc(_sentences(80, seed=1))
    passages = chunk_document(doc, chunk_words=40, overlap=0)
    for p in passages[:-1]:
        assert p.text.endswith("."), p.text
        assert len(p.text.split()) >= 20  # ends in the window's last half, not at the first period


def test_overlong_sentence_is_cut_by_words() -> None:
    doc = _doc("Short one. " + " ".join(["word"] * 95) + " end. Tail sentence here.")
    passages = chunk_document(doc, chunk_words=30, overlap=0)
    assert all(len(p.text.split()) <= 30 for p in passages)
    assert any(not p.text.endswith(".") for p in passages)


def test_cjk_is_measured_in_characters() -> None:
    sentence = "长城是中国古代的军事防御工程之一。"  # 17 characters with the full stop
    doc = _doc(sentence * 20, title="")
    passages = chunk_document(doc, chunk_words=20, overlap=4)  # 20 words ~ 30 characters
    assert len(passages) > 5
    for p in passages:
        assert doc.text[p.start : p.end] == p.text
        assert len(p.text) <= 30
    assert passages[0].text == sentence  # ends at 。 in the last part of the window
    assert len(chunk_document(doc, chunk_words=20, overlap=4, cjk_chars_per_word=1.0)[0].text) <= 20


def test_mixed_cjk_and_closing_quotes() -> None:
    doc = _doc("他说：「今天天气很好。」然后走了。Then he left the building quietly.")
    for p in chunk_document(doc, chunk_words=8, overlap=0):
        assert doc.text[p.start : p.end] == p.text
    assert chunk_document(doc, chunk_words=8, overlap=0)[0].text == "他说：「今天天气很好。」"


def test_chunk_words_zero_whole_document_and_edge_cases() -> None:
    doc = _doc("  " + _sentences(50) + "\n ")
    [p] = chunk_document(doc, chunk_words=0, overlap=0)
    assert p.text == doc.text.strip() and doc.text[p.start : p.end] == p.text
    assert chunk_document(_doc("", title=""), 10, 2) == []
    [title_only] = chunk_document(_doc("", title="Just a title"), 10, 2)
    assert title_only.text == "" and title_only.indexed_text.strip() == "Just a title"
    assert len(chunk_document(_doc("a short text."), 100, 20)) == 1
    with pytest.raises(RagtuneError):
        chunk_document(doc, 10, 10)


def test_chunk_documents_uses_config() -> None:
    docs = [_doc(_sentences(30)), Document("d2", "tiny.")]
    out = list(chunk_documents(docs, CorpusConfig(chunk_words=0)))
    assert [p.doc_id for p in out] == ["d1", "d2"]
