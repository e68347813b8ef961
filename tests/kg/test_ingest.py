import json

import numpy as np
import pytest

from ragtune.errors import RagtuneError
from ragtune.kg.ingest import update_triples
from ragtune.retrieval.index import Index
from tests.kg.kb import TRIPLES, write_kb


def _edges(index):
    with Index.open(index) as idx:
        g = idx.graph
        return {(g.names[s], g.relations[r], g.names[o]) for s, r, o, _ in g.edges.tolist()}


def test_index_triples_then_update_incrementally(tmp_path):
    kb = write_kb(tmp_path / "kb" / "family.tsv", TRIPLES[:12])
    other = write_kb(tmp_path / "kb" / "zh.tsv", TRIPLES[21:])
    index = tmp_path / "idx"
    r = update_triples(index, [tmp_path / "kb"])
    assert (r.files_read, r.triples_added, r.triples_total) == (2, 18, 18)
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["graph"]["triples"] == 18 and "graph/edges.npy" in manifest["checksums"]
    with Index.open(index) as idx:
        ids_before = {n: i for i, n in enumerate(idx.graph.names)}

    # unchanged files are not re-read; a changed one is replaced as a whole
    r = update_triples(index, [tmp_path / "kb"])
    assert (r.files_read, r.files_unchanged, r.triples_added) == (0, 2, 0)
    write_kb(kb, TRIPLES[:10] + [("aldo_brenn", "hobby", "sailing")])
    r = update_triples(index, [tmp_path / "kb"])
    assert (r.files_read, r.files_unchanged, r.triples_added, r.triples_removed, r.triples_total) == (1, 1, 11, 12, 17)
    edges = _edges(index)
    assert ("aldo_brenn", "hobby", "sailing") in edges and ("Mira_Kessel", "located_in", "ostmark") not in edges
    assert ("李白", "朋友", "杜甫") in edges
    with Index.open(index) as idx:  # entity ids are stable across updates
        assert all(idx.graph.names[i] == n for n, i in ids_before.items())

    # a file that vanished from a folder given again is removed
    other.unlink()
    r = update_triples(index, [tmp_path / "kb"])
    assert (r.sources_removed, r.triples_total) == (1, 11)


def test_malformed_lines_are_reported_and_nothing_indexed_is_lost(tmp_path):
    index = tmp_path / "idx"
    good = write_kb(tmp_path / "good.tsv", TRIPLES[:5])
    update_triples(index, [good])
    bad = tmp_path / "bad.tsv"
    bad.write_text("x\tr\ty\nbroken line\nz\tr\n", encoding="utf-8")
    r = update_triples(index, [bad])
    assert [(p.path, p.line) for p in r.problems] == [(str(bad), 2), (str(bad), 3)]
    assert r.triples_total == 6  # the five already indexed and the one good line
    assert len(_edges(index)) == 6

    # a run that fails (a missing file) leaves the index as it was
    with pytest.raises(RagtuneError, match="does not exist"):
        update_triples(index, [tmp_path / "missing.tsv"])
    assert len(_edges(index)) == 6


def test_nothing_but_malformed_lines_is_an_error(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("broken\n", encoding="utf-8")
    with pytest.raises(RagtuneError, match=r"no triples to index .*bad.tsv:1"):
        update_triples(tmp_path / "idx", [bad])
    assert not (tmp_path / "idx").exists()


def test_graph_adjacency_walks_both_directions(tmp_path):
    index = tmp_path / "idx"
    update_triples(index, [write_kb(tmp_path / "kb.tsv", TRIPLES)])
    with Index.open(index) as idx:
        g = idx.graph
        mira = g.entity_id("mira_kessel")
        steps, nbrs = g.neighbours(mira)
        got = {(g.step_text(s), g.names[n]) for s, n in zip(steps.tolist(), nbrs.tolist())}
        assert got == {("nationality", "veltria"), ("children", "tobin_brenn"), ("inverse spouse", "aldo_brenn")}
        assert g.chain_text([2 * g.relations.index("spouse"), 2 * g.relations.index("nationality")]) == "[nationality of spouse]"


def test_damaged_graph_fails_with_one_clear_error(tmp_path):
    index = tmp_path / "idx"
    update_triples(index, [write_kb(tmp_path / "kb.tsv", TRIPLES)])
    np.save(index / "graph" / "edges.npy", np.zeros((3, 4), dtype=np.int32))
    with pytest.raises(RagtuneError, match="rebuild"):
        Index.open(index)
