import json
import shutil
from pathlib import Path

import pytest

from ragtune.config import Config
from ragtune.errors import RagtuneError
from ragtune.retrieval import index as index_mod
from ragtune.retrieval import update as update_mod
from ragtune.retrieval.index import Index
from ragtune.retrieval.update import update

DOCS = {
    "cats.txt": "Cats are small domesticated carnivores. They purr when content and hunt mice at night.",
    "rivers.txt": "The Danube flows through Vienna and Budapest before reaching the Black Sea.",
    "sub/volcano.md": "# Volcanoes\n\nMount Etna in Sicily is one of the most active volcanoes in Europe.",
}


def write_docs(root: Path, docs: dict[str, str]) -> None:
    for name, text in docs.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def top_doc(idx: Index, query: str) -> str | None:
    hits = idx.retriever("bm25").search([query], 1)
    row = hits.row(0)
    return hits.passages(idx.store)[0][0].doc_id if row else None


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "docs"
    write_docs(root, DOCS)
    return root


def test_build_and_search(corpus, tmp_path):
    report = update(tmp_path / "idx", [corpus], config=Config())
    assert report.files_read == 3 and report.passages_total == 3
    with Index.open(tmp_path / "idx") as idx:
        assert top_doc(idx, "which river reaches the Black Sea?") == "rivers.txt"
        assert top_doc(idx, "active volcano in Sicily") == "sub/volcano.md"
        manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
        assert manifest["format_version"] == index_mod.FORMAT_VERSION
        assert manifest["counts"]["passages"] == 3 and "bm25" in manifest["retrievers"]


def test_incremental_add_change_delete(corpus, tmp_path):
    idx_dir = tmp_path / "idx"
    update(idx_dir, [corpus])
    with Index.open(idx_dir) as idx:
        river_ids = set(idx.store.ids().tolist())
    (corpus / "cats.txt").unlink()
    (corpus / "rivers.txt").write_text("The Rhine flows from the Alps to the North Sea.", encoding="utf-8")
    write_docs(corpus, {"new.txt": "Penguins live in Antarctica and cannot fly."})
    report = update(idx_dir, [corpus])
    assert report.files_unchanged == 1 and report.files_read == 2 and report.sources_removed == 1
    assert report.passages_removed == 2 and report.passages_added == 2 and report.passages_total == 3
    with Index.open(idx_dir) as idx:
        assert top_doc(idx, "penguins Antarctica") == "new.txt"
        assert top_doc(idx, "cats purr mice") is None  # deleted passages never come back
        assert top_doc(idx, "Rhine Alps North Sea") == "rivers.txt"
        assert top_doc(idx, "Danube Vienna Budapest") is None
        ids = set(idx.store.ids().tolist())
        assert len(ids & river_ids) == 1  # the unchanged volcano passage keeps its id; new ids are new
        assert max(ids) > max(river_ids)


def test_unchanged_rerun_reads_nothing(corpus, tmp_path):
    update(tmp_path / "idx", [corpus])
    report = update(tmp_path / "idx", [corpus])
    assert report.files_read == 0 and report.files_unchanged == 3 and report.passages_total == 3


def test_second_root_is_kept(corpus, tmp_path):
    other = tmp_path / "other"
    write_docs(other, {"moon.txt": "The Moon orbits the Earth every 27 days."})
    update(tmp_path / "idx", [corpus])
    update(tmp_path / "idx", [other])
    with Index.open(tmp_path / "idx") as idx:
        assert len(idx.store) == 4
        assert top_doc(idx, "moon orbits") == "moon.txt"


def test_interrupted_update_leaves_previous_index(corpus, tmp_path, monkeypatch):
    idx_dir = tmp_path / "idx"
    update(idx_dir, [corpus])
    write_docs(corpus, {"new.txt": "Penguins live in Antarctica."})

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(update_mod, "write_json", boom)
    with pytest.raises(KeyboardInterrupt):
        update(idx_dir, [corpus])
    monkeypatch.undo()
    assert not list(tmp_path.glob(".idx.staging-*"))
    with Index.open(idx_dir) as idx:
        assert len(idx.store) == 3 and top_doc(idx, "penguins") is None
        assert top_doc(idx, "Danube") == "rivers.txt"


def test_crash_between_swap_renames_is_recovered(corpus, tmp_path):
    idx_dir = tmp_path / "idx"
    update(idx_dir, [corpus])
    shutil.move(idx_dir, tmp_path / ".idx.old")  # the state after the first rename of a swap
    with Index.open(idx_dir) as idx:
        assert len(idx.store) == 3


def test_errors_name_the_fix(corpus, tmp_path):
    with pytest.raises(RagtuneError, match="ragtune index"):
        Index.open(tmp_path / "missing")
    update(tmp_path / "idx", [corpus])
    manifest_path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 999
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RagtuneError, match="--rebuild"):
        Index.open(tmp_path / "idx")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RagtuneError, match="no passages"):
        update(tmp_path / "idx2", [empty])
    assert not (tmp_path / "idx2").exists()
    with pytest.raises(RagtuneError, match="retriever"):
        update(tmp_path / "idx3", [corpus], retrievers=["bogus"])


def test_add_tfidf_beside_bm25(corpus, tmp_path):
    update(tmp_path / "idx", [corpus])
    update(tmp_path / "idx", [corpus], retrievers=["tfidf"])
    with Index.open(tmp_path / "idx") as idx:
        assert idx.kinds == ["bm25", "tfidf"]
        hits = idx.retriever("tfidf").search(["Danube Vienna"], 1)
        assert hits.passages(idx.store)[0][0].doc_id == "rivers.txt"
        with pytest.raises(RagtuneError, match="no dense"):
            idx.retriever("dense")


def test_update_never_writes_through_hard_links(corpus, tmp_path):
    """Staging hard-links retriever files; an update must write new files, never into linked ones."""
    import hashlib
    import os

    def digests(root):
        return {p.relative_to(root): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}

    idx_dir = tmp_path / "idx"
    update(idx_dir, [corpus])
    linked = tmp_path / "linked"
    shutil.copytree(idx_dir, linked, copy_function=os.link)  # shares every file's inode with the live index
    before = digests(linked)
    write_docs(corpus, {"new.txt": "Penguins live in Antarctica."})
    (corpus / "cats.txt").unlink()
    update(idx_dir, [corpus])
    update(idx_dir, [corpus], optimize=True)
    assert digests(linked) == before
    with Index.open(idx_dir) as idx:
        assert top_doc(idx, "penguins") == "new.txt" and top_doc(idx, "cats purr") is None
