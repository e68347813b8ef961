import pytest

from ragtune.corpus.types import Passage
from ragtune.dialogue.kdconv import DialogueExample
from ragtune.evaluation.dialogue import evaluate_dialogue, holds, knowledge_recall
from ragtune.evaluation.dialogue_metrics import contains_value
from tests.kg.conftest import kg_world  # noqa: F401  (the fixture)

DOC = Passage(1, "d1", "故宫的门票是60元，旺季开放。", title="故宫")
PATH = Passage(1 << 48, "kg:故宫", "[地址] 故宫 → 地址 → 北京市东城区", title="故宫")


class Store:
    """Path passages hold exactly the triples ``triples`` names; documents hold none this way."""

    def triples(self, i):
        return [("故宫", "地址", "北京市东城区")] if i == PATH.id else []


def test_holds_by_structure_for_paths_and_by_text_for_documents():
    assert holds(Store(), PATH, ("故宫", "地址", "北京市东城区"))
    assert not holds(Store(), PATH, ("故宫", "门票", "60元"))  # a path holds its own triples only
    assert holds(Store(), DOC, ("故宫", "门票", "60元"))  # subject (the title) and object in the text
    assert not holds(Store(), DOC, ("天坛", "门票", "60元"))
    assert not holds(Store(), None, ("故宫", "门票", "60元"))


def test_knowledge_recall_by_hand():
    gold = [("故宫", "地址", "北京市东城区"), ("故宫", "门票", "60元")]
    row = [PATH, None, DOC]
    assert knowledge_recall(Store(), row, gold, 1) == 0.5  # the path holds one of the two
    assert knowledge_recall(Store(), row, gold, 5) == 1.0
    assert knowledge_recall(Store(), row, [], 1) == 1.0


@pytest.fixture(scope="module")
def chat_rag(kg_world, tmp_path_factory):
    from ragtune.rag.model import RAG
    from tests.helpers.tiny_lm import tiny_causal_lm
    from tests.kg.kb import TRIPLES

    lm = tiny_causal_lm(tmp_path_factory.mktemp("lm"), [" ".join(t) for t in TRIPLES] + ["他出生在哪里？ 巩县。"], layers=1,
                        vocab_size=300)
    cfg = kg_world["cfg"].updated(generator={"model": str(lm), "max_new_tokens": 4}, rag={"k": 2})
    return RAG.from_index(kg_world["index"], config=cfg)


EXAMPLES = [
    DialogueExample(0, 3, (("李白的朋友是谁？", "是杜甫。"),), "他出生在哪里？", "他出生在巩县。", (("杜甫", "出生地", "巩县"),)),
    DialogueExample(0, 5, (("李白的朋友是谁？", "是杜甫。"), ("他出生在哪里？", "巩县。")), "那李白呢？", "李白出生在碎叶城。",
                    (("李白", "出生地", "碎叶城"),)),
    DialogueExample(0, 7, (), "谢谢你！", "不客气。", ()),
]


def test_history_retrieval_finds_the_annotated_triples_and_last_turn_does_not(chat_rag):
    chat_rag.chat = chat_rag.chat.model_copy(update={"query": "history"})
    report = evaluate_dialogue(chat_rag, EXAMPLES[:1], generate=False)
    assert report.n == 1 and report.recall == {1: 1.0, 5: 1.0} and report.bleu4 is None
    chat_rag.chat = chat_rag.chat.model_copy(update={"query": "last-turn"})
    assert evaluate_dialogue(chat_rag, EXAMPLES[:1], generate=False).recall == {1: 0.0, 5: 0.0}  # no entity in the message


def test_replies_are_scored_and_the_no_knowledge_choice_is_counted(chat_rag):
    chat_rag.chat = chat_rag.chat.model_copy(update={"query": "history", "min_knowledge": None})
    report = evaluate_dialogue(chat_rag, EXAMPLES, batch_size=2)
    replies = [p["reply"] for p in report.predictions]
    assert report.n == 2 and report.n_all == 3 and len(replies) == 3
    assert report.value_rate == pytest.approx(sum(contains_value(r, [e.knowledge[0][2]]) for r, e in zip(replies, EXAMPLES[:2])) / 2)
    assert 0.0 <= report.f1 <= 1.0 and 0.0 <= report.bleu1 <= 1.0
    # the two questions keep knowledge; the thank-you, with no history and no entity named, has nothing to start
    # a path search from, so it keeps none: all three choices match the annotation
    used = [p["knowledge_used"] for p in report.predictions]
    assert used == [True, True, False] and report.decision_accuracy == 1.0
    assert report.predictions[0]["retrieval"]["entities"][0][0] == "杜甫"
    # a threshold above every score: no turn keeps knowledge, so only the thank-you is decided right
    chat_rag.chat = chat_rag.chat.model_copy(update={"min_knowledge": 1e9})
    report = evaluate_dialogue(chat_rag, EXAMPLES, generate=False)
    assert [p["knowledge_used"] for p in report.predictions] == [False, False, False]
    assert report.decision_accuracy == pytest.approx(1 / 3) and report.recall == {1: 0.0, 5: 0.0}
    chat_rag.chat = chat_rag.chat.model_copy(update={"min_knowledge": None})
    d = report.to_dict()
    assert {"knowledge_recall@1", "knowledge_recall@5", "bleu4", "f1", "distinct2", "n"} <= set(d)
