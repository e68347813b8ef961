"""Bad configs, datasets and training rows, and out-of-range requests: one line and exit 2 each, or capped."""
import json

import pytest

from tests.cli.test_interrupt import write_corpus
from tests.helpers.cli import assert_user_error, cli


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    write_corpus(root / "docs", 6, tag="puffin")
    assert cli("index", root / "docs", "--index", root / "idx", "-q").returncode == 0
    return root / "idx"


@pytest.mark.parametrize("content, says", [
    (None, "does not exist"),
    (b"[corpus\nchunk_words = ", "not valid TOML"),
    (b"\xff\xfe\x00garbage", "not"),
    (b"[corpus]\nchunk_words = -3\n", "invalid setting: corpus.chunk_words"),
    (b"[nonsense]\nx = 1\n", "invalid setting"),
])
def test_bad_config_is_one_line(tmp_path, idx, content, says):
    cfg = tmp_path / "ragtune.toml"
    if content is not None:
        cfg.write_bytes(content)
    write_corpus(tmp_path / "docs", 1)
    assert_user_error(cli("index", tmp_path / "docs", "--index", tmp_path / "new", "--config", cfg), contains=says)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name, content, says", [
    ("dev.json", b"\x00\x01\x02\xff binary", "not UTF-8"),
    ("dev.json", b'{"data": {"title": "x"}}', "SQuAD-style"),
    ("dev.json", b'{"data": []}', "no questions"),
    ("dev.jsonl", b"", "no questions"),
    ("dev.jsonl", b"\x00\x01\x02\xff binary", "binary"),
    ("dev.json", b"[" * 100000, "nested too deeply"),
])
def test_bad_eval_dataset_is_one_line(tmp_path, idx, name, content, says):
    (tmp_path / name).write_bytes(content)
    assert_user_error(cli("eval", "qa", "--dataset", tmp_path / name, "--index", idx), contains=says)


@pytest.mark.parametrize("content, says", [
    (b"\x00\x01\x02\xff binary rows", "binary"),
    (b'{"question": "caf\xe9?", "answers": ["x"]}\n', "no usable rows"),
    (b"", "no usable rows"),
])
def test_bad_training_rows_are_one_line(tmp_path, idx, content, says):
    (tmp_path / "train.jsonl").write_bytes(content)
    proc = cli("train", "--index", idx, "--train", tmp_path / "train.jsonl", "--out", tmp_path / "out",
               "--retriever", "bm25", "--objective", "contrastive")
    assert_user_error(proc, contains=says)


def test_invalid_utf8_row_is_named_by_line_with_strict(tmp_path, idx):
    (tmp_path / "train.jsonl").write_bytes(b'{"question": "ok?", "answers": ["x"]}\n{"question": "caf\xe9"}\n')
    proc = cli("train", "--index", idx, "--train", tmp_path / "train.jsonl", "--out", tmp_path / "out", "--strict",
               "--retriever", "bm25", "--objective", "contrastive")
    assert_user_error(proc, contains="line 2: not UTF-8")


def test_empty_question_is_refused(idx):
    assert_user_error(cli("ask", "  ", "--index", idx), contains="the question is empty")


def test_huge_k_is_capped_at_the_passages_there_are(idx):
    proc = cli("search", "puffin", "--index", idx, "-k", "1000000000", "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["hits"]) == 6  # the first window of each of the 6 files names the puffin


def test_huge_k_in_process_allocates_nothing_large(idx):
    from ragtune.retrieval.index import Index

    with Index.open(idx) as opened:
        n = len(opened.store)  # 6 files of 300 words in 100-word windows
        assert n == 24
        hits = opened.retriever("bm25").search(["puffin document"], 10**12)
        assert hits.ids.shape == (1, n)
