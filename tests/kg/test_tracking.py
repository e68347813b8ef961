import math
import pickle

import pytest

from ragtune.config import ChatConfig
from ragtune.kg.graph import Graph
from ragtune.kg.linking import EntityLinker, Link
from ragtune.kg.tracking import Tracked, recency_weight, track_entities
from ragtune.rag.history import ChatQuery, conversation_query, joined_query, utterances
from tests.kg.kb import TRIPLES

# an exact two-character CJK mention written as the KB writes it: 1 - 0.5 exp(-6/8) + 0.05 (linking.exact_score)
LI_BAI = 1 - 0.5 * math.exp(-0.75) + 0.05  # 0.813817


@pytest.fixture(scope="module")
def graph():
    g = Graph()
    g.replace_source("kb", "fp", TRIPLES)
    return g


def test_recency_weight_by_hand():
    assert recency_weight(0.8, 2, 0.9, True, 0.1) == pytest.approx(0.8 * 0.81)
    assert recency_weight(0.8, 0, 0.9, False, 0.1) == pytest.approx(0.08)


def test_track_keeps_each_entity_s_best_mention_and_reads_only_the_lookback():
    links = {"a": [Link(1, 1.0, "x", True)], "b": [Link(2, 0.9, "y", True), Link(1, 0.5, "x", True)], "c": []}
    got = track_entities(lambda t: links[t], ["a", "b", "c"], has_facts=lambda e: True, decay=0.5, object_weight=0.1,
                         lookback=8, top=5)
    # entity 2: 0.9 x 0.5 (one back); entity 1: max(1.0 x 0.25 two back, 0.5 x 0.5 one back) = 0.25, the newer wins ties
    assert got == [Tracked(2, 0.45, 1), Tracked(1, 0.25, 1)]
    assert track_entities(lambda t: links[t], ["a", "b", "c"], has_facts=lambda e: True, decay=0.5, object_weight=0.1,
                          lookback=0, top=5) == []


def test_the_entity_of_earlier_turns_is_in_play_and_values_weigh_little(graph):
    linker = EntityLinker(graph)
    got = track_entities(linker.link, ["李白的朋友是谁？", "是杜甫。", "他出生在哪里？"], has_facts=graph.has_facts, decay=0.9,
                         object_weight=0.1, lookback=8, top=2)
    assert [(graph.names[t.entity], t.age) for t in got] == [("杜甫", 1), ("李白", 2)]
    assert [t.score for t in got] == pytest.approx([LI_BAI * 0.9, LI_BAI * 0.81])
    assert graph.has_facts(graph.entity_id("巩县")) and not graph.has_facts(graph.entity_id("河南"))
    got = track_entities(linker.link, ["河南和李白"], has_facts=graph.has_facts, decay=0.9, object_weight=0.1, lookback=8, top=2)
    assert [graph.names[t.entity] for t in got] == ["李白", "河南"]
    assert got[1].score == pytest.approx(LI_BAI * 0.1)


def test_conversation_query_kinds(graph):
    linker = EntityLinker(graph)
    history = [("李白的朋友是谁？", "是杜甫。")]
    msg = "他出生在哪里？"
    assert utterances(history, msg) == ["李白的朋友是谁？", "是杜甫。", msg]
    assert conversation_query(msg, history, ChatConfig(query="last-turn"), graph, linker) == msg
    assert conversation_query(msg, history, ChatConfig(query="joined"), graph, linker) == "李白的朋友是谁？ 他出生在哪里？"
    # without a graph, "history" falls back to the joined user turns
    assert conversation_query(msg, history, ChatConfig(), None, None) == joined_query(msg, history)
    q = conversation_query(msg, history, ChatConfig(max_entities=2), graph, linker)
    assert isinstance(q, ChatQuery) and q == "他出生在哪里？ 杜甫 李白"
    assert [n for n, _ in q.topics] == ["杜甫", "李白"] and q.max_hops == 1 and q.rewrite is None
    back = pickle.loads(pickle.dumps(q))  # crosses to Ray shard actors intact
    assert back == q and back.topics == q.topics and back.max_hops == 1


def test_path_search_starts_from_the_tracked_entities(kg_world):
    from ragtune.retrieval.index import Index

    with Index.open(kg_world["index"]) as idx:
        r = idx.retriever("paths")
        q = conversation_query("他出生在哪里？", [("李白的朋友是谁？", "是杜甫。")], ChatConfig(max_entities=2), idx.graph, r.linker)
        hits = r.search([q], 4)
        best = idx.store.get([int(hits.ids[0, 0])])[0]
        assert best.text.startswith("[出生地] 杜甫") and idx.store.tails(best.id) == ["巩县"]
        # one hop from each topic: no chain of two steps
        entries = [idx.store.paths.entry(int(i)) for i in hits.ids[0] if i >= 0]
        assert entries and all(len(e.steps) == 1 for e in entries)
        assert {idx.graph.names[e.topic] for e in entries} <= {"杜甫", "李白"}
        # the message alone names no entity: nothing to start from
        assert (r.search(["他出生在哪里？"], 4).ids == -1).all()


def test_english_follow_up_finds_the_fact_of_the_person_named_before(kg_world):
    from ragtune.retrieval.index import Index

    with Index.open(kg_world["index"]) as idx:
        r = idx.retriever("paths")
        history = [("tell me about kara_voss", "She is from veltria.")]
        q = conversation_query("who is her spouse ?", history, ChatConfig(), idx.graph, r.linker)
        # veltria, one back: (1 - 0.5 exp(-7/8) + 0.05) x 0.9; kara_voss, two back: (1 - 0.5 exp(-1) + 0.05) x 0.81
        assert [n for n, _ in q.topics] == ["veltria", "kara_voss"]
        assert [s for _, s in q.topics] == pytest.approx([(1.05 - 0.5 * math.exp(-7 / 8)) * 0.9, (1.05 - 0.5 * math.exp(-1)) * 0.81])
        # the more recent place has no spouse: the path that answers starts from the person
        best = idx.store.get([int(r.search([q], 3).ids[0, 0])])[0]
        assert best.text.startswith("[spouse] kara_voss") and idx.store.tails(best.id) == ["emil_dorn"]
