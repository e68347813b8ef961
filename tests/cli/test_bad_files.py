"""One bad file never stops indexing: it is counted, named and skipped like a binary file."""
import json
import os

from ragtune.corpus.ingest import IngestReport, sync_store
from tests.helpers.cli import cli


def make_bad_folder(folder):
    folder.mkdir()
    (folder / "good.txt").write_text("Kingfishers dive for fish in clear streams.", encoding="utf-8")
    os.symlink(folder / "loop_b.txt", folder / "loop_a.txt")
    os.symlink(folder / "loop_a.txt", folder / "loop_b.txt")
    os.symlink(folder / "gone.txt", folder / "dangling.txt")
    (folder / "shapes.json").write_text(json.dumps({"data": [1, "two", {"paragraphs": 3}]}), encoding="utf-8")
    (folder / "rows.json").write_text(json.dumps({"data": {"not": "a list"}}), encoding="utf-8")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02 binary")
    (folder / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))


def test_index_skips_and_names_every_bad_file(tmp_path):
    make_bad_folder(tmp_path / "docs")
    proc = cli("index", tmp_path / "docs", "--index", tmp_path / "idx")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    summary = proc.stdout
    assert "1 file(s) read" in summary and "7 skipped" in summary, summary
    for name in ("loop_a.txt", "loop_b.txt", "dangling.txt", "shapes.json", "rows.json", "binary.txt", "latin1.md"):
        assert name in summary, (name, summary)
    found = cli("search", "kingfishers", "--index", tmp_path / "idx", "--json")
    assert [h["doc_id"] for h in json.loads(found.stdout)["hits"]] == ["good.txt"]


def test_unlistable_folder_is_counted_and_named(tmp_path, monkeypatch):
    # as root a chmod 000 folder is still readable, so the refusal is simulated where os.walk lists folders
    from ragtune.corpus.store import PassageStore
    from ragtune.config import Config

    docs = tmp_path / "docs"
    (docs / "locked").mkdir(parents=True)
    (docs / "locked" / "secret.txt").write_text("hidden text", encoding="utf-8")
    (docs / "open.txt").write_text("Visible text about otters.", encoding="utf-8")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = IngestReport()
    store = PassageStore(tmp_path / "store.sqlite")
    sync_store(store, [docs], [], Config(), report)
    store.close()
    assert report.files_read == 1
    assert report.skipped == [(str(docs / "locked"), "unreadable folder: Permission denied")]
