"""Two writers of one index: the second waits (saying so) or fails at once; no run's additions are lost; the
kernel frees the lock of a writer that dies; readers never wait."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ragtune.retrieval.update import lock_path, remove_stale_staging, writer_lock
from tests.cli.test_interrupt import write_corpus
from tests.helpers.cli import assert_user_error, cli, cli_env, cli_start


def doc_ids(idx) -> set:
    from ragtune.retrieval.index import Index

    with Index.open(idx) as opened:
        return {p.doc_id for batch in opened.store.iter_passages(batch_size=10_000) for p in batch}


def test_two_concurrent_index_runs_keep_both_additions(tmp_path):
    a, b, idx = tmp_path / "a", tmp_path / "b", tmp_path / "idx"
    write_corpus(a, 800, tag="alpha")
    write_corpus(b, 800, tag="beta")
    first, second = cli_start("index", a, "--index", idx), cli_start("index", b, "--index", idx)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    ids = doc_ids(idx)
    assert {f"alphadoc{i:05d}.txt" for i in range(800)} <= ids
    assert {f"betadoc{i:05d}.txt" for i in range(800)} <= ids
    assert len(ids) == 1600


def _holder(idx) -> subprocess.Popen:
    """Another process holding the index's writer lock until killed."""
    code = ("import sys, time; from pathlib import Path; from ragtune.retrieval.update import writer_lock\n"
            "with writer_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(idx)], stdout=subprocess.PIPE, text=True, env=cli_env())
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_fails_at_once_with_no_wait_and_waits_by_default(tmp_path):
    docs, idx = tmp_path / "docs", tmp_path / "idx"
    write_corpus(docs, 3)
    holder = _holder(idx)
    try:
        err = assert_user_error(cli("index", docs, "--index", idx, "--no-wait"), contains=f"(pid {holder.pid})")
        assert "--wait" in err
        waiting = cli_start("index", docs, "--index", idx)
        deadline = time.monotonic() + 30
        line = ""
        while "waiting" not in line and time.monotonic() < deadline:
            line = waiting.stderr.readline()
        assert "waiting for it to finish" in line
        time.sleep(0.5)
        assert waiting.poll() is None, "the second writer did not wait"
    finally:
        holder.kill()  # SIGKILL: the kernel releases its lock
        holder.wait()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "indexed" in out and len(doc_ids(idx)) == 3


def test_readers_do_not_wait_for_a_writer(tmp_path):
    docs, idx = tmp_path / "docs", tmp_path / "idx"
    write_corpus(docs, 3, tag="quokka")
    assert cli("index", docs, "--index", idx, "-q").returncode == 0
    holder = _holder(idx)
    try:
        proc = cli("search", "quokka", "--index", idx, "--json", timeout=60)
        assert proc.returncode == 0 and len(json.loads(proc.stdout)["hits"]) == 3
    finally:
        holder.kill()
        holder.wait()


def test_lock_in_process_fails_fast_when_asked(tmp_path):
    from ragtune.errors import RagtuneError

    idx = tmp_path / "idx"
    holder = _holder(idx)
    try:
        with pytest.raises(RagtuneError, match="is updating the index"):
            with writer_lock(idx, wait=False):
                pass
        assert lock_path(idx).read_text().strip() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    with writer_lock(idx, wait=False):  # free again once its holder is gone
        assert lock_path(idx).read_text().strip() == str(os.getpid())


def test_stale_staging_of_a_dead_writer_is_removed_on_the_next_run(tmp_path):
    docs, idx = tmp_path / "docs", tmp_path / "idx"
    write_corpus(docs, 3)
    assert cli("index", docs, "--index", idx, "-q").returncode == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".idx.staging-{dead.pid}"
    stale.mkdir()
    (stale / "passages.sqlite").write_bytes(b"x" * 1000)
    assert remove_stale_staging(idx) == 1 and not stale.exists()
    stale.mkdir()
    write_corpus(docs, 4)
    proc = cli("index", docs, "--index", idx, "-q")
    assert proc.returncode == 0 and not stale.exists()


def test_a_writer_killed_mid_update_frees_the_lock_and_leaves_the_index(tmp_path):
    small, big, idx = tmp_path / "small", tmp_path / "big", tmp_path / "idx"
    write_corpus(small, 3)
    assert cli("index", small, "--index", idx, "-q").returncode == 0
    write_corpus(big, 3000, tag="big")
    proc = cli_start("index", big, "--index", idx)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".idx.staging-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(doc_ids(idx)) == 3  # the previous index, searchable
    again = cli("index", small, "--index", idx, "--no-wait")  # the dead writer's lock and staging are gone
    assert again.returncode == 0, again.stderr
    assert not list(tmp_path.glob(".idx.staging-*"))
