"""Ctrl-C says that the command was interrupted and what was kept, and exits 130 so `index && ...` stops."""
import json
import signal
import time

from tests.helpers.cli import cli, cli_start

WORDS = "river mountain valley ocean forest desert glacier canyon island meadow".split()


def write_corpus(folder, n_files: int, words: int = 300, tag: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        text = " ".join(WORDS[(i * 7 + j) % len(WORDS)] + str(j % 50) for j in range(words))
        (folder / f"{tag}doc{i:05d}.txt").write_text(f"{tag} document {i}. {text}", encoding="utf-8")


def search_ids(idx, query: str) -> list:
    proc = cli("search", query, "--index", idx, "-k", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    return [h["id"] for h in json.loads(proc.stdout)["hits"]]


def test_ctrl_c_during_index_exits_130_and_keeps_the_previous_index(tmp_path):
    small, big, idx = tmp_path / "small", tmp_path / "big", tmp_path / "idx"
    write_corpus(small, 3, tag="zebra")
    assert cli("index", small, "--index", idx, "-q").returncode == 0
    before = search_ids(idx, "zebra document")
    write_corpus(big, 4000, tag="yak")
    proc = cli_start("index", big, "--index", idx)
    staging = list(tmp_path.glob(".idx.staging-*"))
    deadline = time.monotonic() + 60
    while not staging and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        staging = list(tmp_path.glob(".idx.staging-*"))
    assert staging and proc.poll() is None, "the update never started staging"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and "as it was before this run" in last
    assert not list(tmp_path.glob(".idx.staging-*")), "the staging copy was left behind"
    assert search_ids(idx, "zebra document") == before
    assert search_ids(idx, "yak") == []  # nothing of the interrupted run is half-visible


def test_ctrl_c_inside_any_command_is_130_not_success(monkeypatch, capsys):
    # typer turns a KeyboardInterrupt inside a command into the return value 130; main must not exit 0
    import pytest

    from ragtune.cli import main
    from ragtune.retrieval import index as index_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(index_mod.Index, "open", classmethod(interrupted))
    with pytest.raises(SystemExit) as e:
        main(["search", "x", "--index", "anything"])
    assert e.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted"
