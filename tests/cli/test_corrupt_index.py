"""A damaged index part is one line naming the part and `--rebuild`, for search, eval, ask and index alike;
the store is verified against the manifest, so damage is neither served nor re-checksummed by the next run."""
import json

import numpy as np
import pytest

from tests.cli.test_interrupt import write_corpus
from tests.helpers.cli import assert_user_error, cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    write_corpus(root / "docs", 4, tag="heron")
    assert cli("index", root / "docs", "--index", root / "pristine", "-r", "bm25", "-r", "tfidf", "-q").returncode == 0
    return root


@pytest.fixture
def idx(built, tmp_path):
    import shutil

    shutil.copytree(built / "pristine", tmp_path / "idx")
    return tmp_path / "idx"


def overwrite(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


DAMAGE = {
    "garbage retriever json": lambda i: (i / "bm25" / "sparse.json").write_text("{not json"),
    "truncated npy": lambda i: (i / "bm25" / "df.npy").write_bytes((i / "bm25" / "df.npy").read_bytes()[:20]),
    "non-numeric npy": lambda i: np.save(i / "bm25" / "segment-0000" / "ids.npy", np.array(["a", "b"])),
    "missing segment folder": lambda i: __import__("shutil").rmtree(i / "bm25" / "segment-0000"),
    "manifest not an object": lambda i: (i / "manifest.json").write_text("[1, 2, 3]"),
    "manifest garbage": lambda i: (i / "manifest.json").write_bytes(b"\x00\xff garbage"),
    "manifest without retrievers": lambda i: (i / "manifest.json").write_text(json.dumps(
        {**json.loads((i / "manifest.json").read_text()), "retrievers": "bm25"})),
    "store overwritten": lambda i: overwrite(i / "passages.sqlite", 4096 + 100, b"\xde\xad\xbe\xef" * 8),
    "store missing": lambda i: (i / "passages.sqlite").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_search_names_the_part_and_rebuild(idx, damage):
    DAMAGE[damage](idx)
    assert_user_error(cli("search", "heron", "--index", idx, "-r", "bm25"), contains="--rebuild")


def test_every_command_meets_the_same_error(idx, tmp_path):
    DAMAGE["store overwritten"](idx)
    (tmp_path / "qa.jsonl").write_text('{"question": "where do herons live?", "answers": ["river"]}\n')
    for argv in (["search", "heron", "--index", idx],
                 ["ask", "where do herons live?", "--index", idx, "--json"],
                 ["eval", "qa", "--dataset", tmp_path / "qa.jsonl", "--index", idx, "--json"],
                 ["index", tmp_path / "nothing-new", "--index", idx]):
        if argv[0] == "index":
            write_corpus(tmp_path / "nothing-new", 1, tag="egret")
        err = assert_user_error(cli(*argv), contains="--rebuild")
        assert "passages.sqlite" in err


def test_damage_is_not_rechecksummed_by_the_next_index_run(idx, built):
    DAMAGE["store overwritten"](idx)
    assert_user_error(cli("index", built / "docs", "--index", idx), contains="does not match the checksum")
    assert_user_error(cli("search", "heron", "--index", idx), contains="does not match the checksum")
    proc = cli("index", built / "docs", "--index", idx, "--rebuild", "-q")
    assert proc.returncode == 0, proc.stderr
    assert cli("search", "heron", "--index", idx).returncode == 0


def test_an_untouched_index_is_verified_without_hashing(idx, monkeypatch):
    # the manifest records size and mtime with the hash, so opening an intact index reads no store bytes
    from ragtune.corpus import store as store_mod
    from ragtune.retrieval.index import Index

    reads = []
    real = store_mod.file_fingerprint

    def spy(path, previous=None):
        out = real(path, previous=previous)
        reads.append(out is not previous)
        return out

    monkeypatch.setattr(store_mod, "file_fingerprint", spy)
    with Index.open(idx):
        pass
    assert reads == [False]
