import time

import numpy as np
import pytest

from ragtune.kg.graph import Graph
from ragtune.kg.paths import Chain, Query, SearchSettings, extend, score_chains, search, sparse_overlap, top_chains
from ragtune.kg.store import PATH_ID_BASE, GraphPassageStore, PathTable, path_answer
from ragtune.retrieval.paths import PathRetriever
from tests.kg.kb import QUESTIONS, TRIPLES


@pytest.fixture(scope="module")
def graph():
    g = Graph()
    g.replace_source("kb", "fp", TRIPLES)
    return g


def test_pure_scores_by_hand():
    q = {"nationality", "spouse", "what"}
    assert sparse_overlap(q, [["spouse"], ["nationality"]]) == pytest.approx(2 / 2 + 0.2)
    assert sparse_overlap(q, [["spouse"]]) == pytest.approx(1 / 1 + 0.1)
    assert sparse_overlap(q, [["nationality"], ["inverse", "nationality"]]) == pytest.approx(1 / 2 + 0.1)  # one relation twice
    assert sparse_overlap(q, [["spouse"], ["place", "of", "birth"]]) == pytest.approx(1 / 2 + 0.1)
    assert sparse_overlap({"x"}, [["inverse", "spouse"]]) == 0.0 and sparse_overlap(q, []) == 0.0
    # a relation named in part counts its share: "birth" is one of place/birth ("of" ignored)
    assert sparse_overlap(q | {"birth"}, [["place", "of", "birth"]]) == pytest.approx(1 / 2 + 0.1 * 1 / 2)
    # Chinese, unit by unit: 能游玩多长时间 holds 4 of 建议游玩时间's 6 characters and 2 of 开放时间's 4
    cq = set("能游玩多长时间")
    assert sparse_overlap(cq, [list("建议游玩时间")]) == pytest.approx(4 / 6 + 0.1 * 4 / 6)
    assert sparse_overlap(cq, [list("开放时间")]) == pytest.approx(2 / 4 + 0.1 * 2 / 4)
    got = score_chains(np.array([0.5, -0.2]), np.array([1.0, 0.0]), np.array([0.9, 0.7]), w_sparse=2.0, w_link=1.0)
    assert got.tolist() == pytest.approx([0.5 + 2.0 + 0.9, -0.2 + 0.0 + 0.7])


def test_extend_is_non_backtracking(graph):
    aldo, mira = graph.entity_id("aldo_brenn"), graph.entity_id("mira_kessel")
    spouse = 2 * graph.relations.index("spouse")
    c = Chain(aldo, (spouse,), {mira: (aldo, mira)}, 1.0)
    out: dict = {}
    extend(graph, c, SearchSettings(), [100], out)
    texts = {graph.chain_text(k[1]): [graph.names[t] for t in ch.paths] for k, ch in out.items()}
    assert texts == {"[nationality of spouse]": ["veltria"], "[children of spouse]": ["tobin_brenn"]}  # not back to aldo


@pytest.mark.parametrize("question,answers,chain", QUESTIONS)
def test_sparse_search_finds_the_gold_path(graph, question, answers, chain):
    r = PathRetriever(graph, None, SearchSettings(w_sparse=1.0))
    hits = r.search([question], 5)
    best = r.table.entry(int(hits.ids[0, 0]))
    assert graph.chain_text(best.steps) == chain
    assert [graph.display(t) for t in best.tails] == answers
    assert np.all(np.diff(hits.scores[0][np.isfinite(hits.scores[0])]) <= 0)


def test_paths_are_passages_with_a_recoverable_tail(graph):
    r = PathRetriever(graph, None, SearchSettings(w_sparse=1.0))
    hits = r.search(["what is the nationality of aldo_brenn 's spouse ?"], 3)
    assert hits.ids[0, 0] >= PATH_ID_BASE

    class Base:
        def get(self, ids):
            return [None for _ in ids]

        def __len__(self):
            return 7

    store = GraphPassageStore(Base(), r.table)
    row = store.get([int(i) for i in hits.ids[0]])
    assert row[0].text == "[nationality of spouse] aldo_brenn → spouse → mira_kessel → nationality → veltria"
    assert row[0].title == "aldo_brenn" and row[0].doc_id == "kg:aldo_brenn"
    assert path_answer(store, row) == "veltria" and len(store) == 7
    assert store.get([5, PATH_ID_BASE + 10 ** 6]) == [None, None]


def test_reverse_steps_show_the_edge_direction(graph):
    r = PathRetriever(graph, None, SearchSettings(w_sparse=1.0))
    hits = r.search(["what is the gender of emil_dorn 's spouse 's children ?"], 1)
    p = GraphPassageStore(None, r.table).paths.passage(int(hits.ids[0, 0]))
    assert p.text == "[gender of children of inverse spouse] emil_dorn ← spouse ← kara_voss → children → lina_dorn → gender → female"


def test_hub_search_stays_bounded():
    g = Graph()
    hub = [("hub", f"r{i % 50}", f"e{i}") for i in range(20_000)] + [(f"e{i}", f"s{i % 30}", f"f{i % 700}") for i in range(20_000)]
    g.replace_source("kb", "fp", hub)
    s = SearchSettings(max_edges=5_000, max_candidates=500, beam=8, max_frontier=32)
    q = Query("hub", [(g.entity_id("hub"), 1.0)])
    calls = []

    def dense(rows, steps):
        calls.append(len(steps))
        return np.zeros(len(steps))

    t0 = time.perf_counter()
    search(g, [q], dense, s)
    assert time.perf_counter() - t0 < 5.0
    assert len(calls) == 3 and max(calls) <= s.max_candidates
    assert all(len(c.paths) <= s.max_frontier for c in q.found)
    assert len(top_chains(q, 5)) == 5


def test_path_table_ids_are_stable_within_a_process(graph):
    t = PathTable(graph)
    a = t.register(0, (2,), [(0, 1)])
    assert t.register(0, (2,), [(0, 1)]) == a == PATH_ID_BASE
    assert t.register(1, (2,), [(1, 0)]) == a + 1
