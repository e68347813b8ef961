from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from ragtune.corpus.store import PassageStore, file_fingerprint, same_content
from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError


def _passages(doc: str, n: int, source: str = "") -> list[Passage]:
    return [Passage(-1, doc, f"{doc} text {i}", title=doc.upper(), source=source, start=i, end=i + 1) for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> PassageStore:
    with PassageStore(tmp_path / "passages.sqlite") as s:
        yield s


def test_add_assigns_consecutive_ids_and_roundtrips(store: PassageStore) -> None:
    out = store.add(_passages("a", 3, "/x/a.txt"), source="/x/a.txt", fingerprint="fp-a")
    assert [p.id for p in out] == [1, 2, 3]
    assert store[2] == Passage(2, "a", "a text 1", "A", "/x/a.txt", 1, 2)
    assert len(store) == 3 and 3 in store and 4 not in store and "3" not in store
    assert store.sources() == {"/x/a.txt": "fp-a"}
    assert store.fingerprint("/x/a.txt") == "fp-a" and store.fingerprint("nope") is None
    assert store.doc_count("/x/a.txt") == 1


def test_ids_are_never_reused_after_delete(store: PassageStore) -> None:
    store.add(_passages("a", 3), source="a")
    store.add(_passages("b", 2), source="b")
    assert store.delete_source("b") == [4, 5]
    store.delete([3])
    out = store.add(_passages("c", 2), source="c")
    assert [p.id for p in out] == [6, 7]
    assert store.ids().tolist() == [1, 2, 6, 7]
    assert store.ids().dtype == np.int64
    assert set(store.sources()) == {"a", "c"}


def test_delete_source_removes_fingerprint_and_passages(store: PassageStore) -> None:
    store.add(_passages("a", 2), source="a", fingerprint="1")
    store.add(_passages("a2", 1), source="a")  # a second batch of the same source keeps its fingerprint
    assert store.fingerprint("a") == "1" and store.doc_count("a") == 2
    assert store.source_ids("a") == [1, 2, 3]
    assert store.delete_source("a") == [1, 2, 3]
    assert len(store) == 0 and store.sources() == {} and store.delete_source("a") == []


def test_get_preserves_order_and_marks_missing(store: PassageStore) -> None:
    store.add(_passages("a", 5), source="a")
    got = store.get(np.array([5, -1, 1, 99, 5]))
    assert [p.id if p else None for p in got] == [5, None, 1, None, 5]
    assert store.doc_ids([2, -1, 42]) == ["a", None, None]
    with pytest.raises(KeyError):
        store[42]
    many = store.get(list(range(1, 2000)))  # more ids than one SQL statement may bind
    assert sum(p is not None for p in many) == 5


def test_iter_passages_batches(store: PassageStore) -> None:
    store.add(_passages("a", 7), source="a")
    store.delete([2])
    batches = list(store.iter_passages(batch_size=3))
    assert [[p.id for p in b] for b in batches] == [[1, 3, 4], [5, 6, 7]]


def test_persistence_across_reopen_and_snapshot_copy(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with PassageStore(path) as s:
        s.add(_passages("a", 2), source="a", fingerprint="f")
        s.set_meta("analyzer", {"lowercase": True})
        s.delete_source("a")
        s.add(_passages("b", 1), source="b")
        s.checkpoint()
        shutil.copy(path, tmp_path / "copy.sqlite")  # only the main file: WAL was folded in
    for p in (path, tmp_path / "copy.sqlite"):
        with PassageStore(p, readonly=True) as s:
            assert s.ids().tolist() == [3]
            assert s.get_meta("analyzer") == {"lowercase": True} and s.get_meta("missing", 0) == 0
    with PassageStore(path) as s:
        assert [x.id for x in s.add(_passages("c", 1))] == [4]


def test_transaction_rolls_back_everything(store: PassageStore) -> None:
    store.add(_passages("a", 1), source="a")
    with pytest.raises(ValueError):
        with store.transaction():
            store.add(_passages("b", 2), source="b")
            store.delete_source("a")
            raise ValueError("boom")
    assert store.ids().tolist() == [1] and set(store.sources()) == {"a"}
    # the ids of the rolled-back rows were never committed, so the next ones continue from the last commit
    assert store.add(_passages("c", 1))[0].id == 2


def test_backup_and_threads(store: PassageStore, tmp_path: Path) -> None:
    store.add(_passages("a", 3), source="a")
    store.backup(tmp_path / "b.sqlite")
    with PassageStore(tmp_path / "b.sqlite") as b:
        assert len(b) == 3
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(len(store.get([1, 2, 3])))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [3, 3, 3, 3]


def test_bad_files_raise_ragtune_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(RagtuneError):
        PassageStore(junk)
    with pytest.raises(RagtuneError, match="does not exist"):
        PassageStore(tmp_path / "missing.sqlite", readonly=True)


def test_file_fingerprint(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("hello")
    fp = file_fingerprint(f)
    assert fp.startswith("5:") and file_fingerprint(f, previous=fp) == fp
    import os

    os.utime(f, ns=(1, 1))  # touched, not changed
    fp2 = file_fingerprint(f, previous=fp)
    assert fp2 != fp and same_content(fp, fp2)
    f.write_text("hellO")
    assert not same_content(fp, file_fingerprint(f))


def test_doc_counts_follow_adds_and_deletes(store: PassageStore) -> None:
    store.add(_passages("a", 2) + _passages("b", 1), source="s", fingerprint="f")
    store.add(_passages("a", 1) + _passages("c", 2), source="s")  # "a" is not new
    assert store.doc_count("s") == 3
    store.delete(store.source_ids("s")[-2:])  # both passages of "c"
    assert store.doc_count("s") == 2 and store.fingerprint("s") == "f"
    store.set_fingerprint("empty.txt", "e")
    assert store.sources()["empty.txt"] == "e" and store.doc_count("empty.txt") == 0


def test_n_documents_counts_distinct_doc_ids(tmp_path):
    from ragtune.corpus.store import PassageStore
    from ragtune.corpus.types import Passage

    with PassageStore(tmp_path / "s.sqlite") as store:
        store.add([Passage(-1, "a", "one"), Passage(-1, "a", "two"), Passage(-1, "b", "three")], source="x")
        assert store.n_documents() == 2 and len(store) == 3
