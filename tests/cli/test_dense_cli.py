"""The dense and hybrid paths of the CLI, end to end, with a tiny random-init BERT built in the test."""
import json

import pytest

from tests.helpers.tiny_encoder import tiny_encoder_dir
from tests.helpers.cli import run

DOCS = {
    "eiffel.txt": "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "plants.txt": "Photosynthesis converts light energy into chemical energy in plants.",
    "cell.txt": "The mitochondrion is the powerhouse of the cell.",
    "everest.txt": "Mount Everest is the highest mountain above sea level.",
}


@pytest.fixture
def setup(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, text in DOCS.items():
        (kb / name).write_text(text, encoding="utf-8")
    return kb, tiny_encoder_dir(tmp_path / "enc"), tmp_path / "idx"


def test_dense_and_hybrid_side_by_side(setup, capsys):
    kb, enc, idx = setup
    run(capsys, "index", kb, "--index", idx, "--retriever", "bm25")
    out = run(capsys, "index", kb, "--index", idx, "--retriever", "dense", "--encoder", enc)
    assert "bm25, dense" in out  # one directory holds both retrievers
    manifest = json.loads((idx / "manifest.json").read_text())
    assert set(manifest["retrievers"]) == {"bm25", "dense"} and manifest["retrievers"]["dense"]["encoder"] == str(enc)

    # a passage's own text is its nearest neighbour under any encoder (normalised vectors, inner product)
    dense = json.loads(run(capsys, "search", DOCS["cell.txt"], "--index", idx, "--retriever", "dense", "--json", "-k", "4"))
    assert len(dense["hits"]) == 4 and dense["hits"][0]["text"] == DOCS["cell.txt"]
    scores = [h["score"] for h in dense["hits"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0, abs=1e-4)

    hybrid = json.loads(run(capsys, "search", "highest mountain Everest", "--index", idx, "--retriever", "hybrid", "--json"))
    assert hybrid["hits"][0]["text"] == DOCS["everest.txt"]
    assert {h["id"] for h in hybrid["hits"]} == {h["id"] for h in dense["hits"]}

    # rescore: BM25's candidates only, each scored cosine + 0.1 * bm25 (the [hybrid] sparse_weight default)
    q = "the highest tower"
    by = {kind: {h["id"]: h["score"] for h in json.loads(run(capsys, "search", q, "--index", idx, "--retriever", kind,
                                                              "--json", "-k", "4"))["hits"]} for kind in ("bm25", "dense")}
    rescored = json.loads(run(capsys, "search", q, "--index", idx, "--retriever", "rescore", "--json", "-k", "4"))["hits"]
    assert len(by["bm25"]) == 2 and {h["id"] for h in rescored} == set(by["bm25"])  # eiffel ("tower"), everest ("highest")
    for h in rescored:
        assert h["score"] == pytest.approx(by["dense"][h["id"]] + 0.1 * by["bm25"][h["id"]], abs=1e-4)
    assert [h["score"] for h in rescored] == sorted((h["score"] for h in rescored), reverse=True)

    # incremental: a deleted file leaves both retrievers; a new one joins both
    (kb / "cell.txt").unlink()
    (kb / "moon.txt").write_text("The Moon orbits the Earth.", encoding="utf-8")
    run(capsys, "index", kb, "--index", idx)
    for kind in ("bm25", "dense"):
        hits = json.loads(run(capsys, "search", "mitochondrion powerhouse cell", "--index", idx, "--retriever", kind, "--json", "-k", "10"))["hits"]
        assert DOCS["cell.txt"] not in [h["text"] for h in hits]
        hits = json.loads(run(capsys, "search", "The Moon orbits the Earth.", "--index", idx, "--retriever", kind, "--json", "-k", "10"))["hits"]
        assert hits[0]["text"] == "The Moon orbits the Earth." and len(hits) == (4 if kind == "dense" else 1)
