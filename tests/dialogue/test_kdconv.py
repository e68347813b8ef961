import json

import pytest

from ragtune.dialogue.kdconv import DialogueExample, load_dialogue, load_kdconv
from ragtune.errors import RagtuneError
from tests.helpers.datasets import DATASETS

KDCONV = DATASETS / "kdconv_travel"


def attr(name, attrname, value):
    return {"name": name, "attrname": attrname, "attrvalue": value}


# Conversation 0: five messages; the answers at 1, 3 and 4 carry knowledge (4 lists one triple twice).
# Conversation 1: the first message carries attrs (never a response), the second does not.
CONVERSATIONS = [
    {"messages": [
        {"message": "m0 知道故宫吗？"},
        {"message": "m1 知道", "attrs": [attr("故宫", "地址", "北京市东城区")]},
        {"message": "m2 门票多少？"},
        {"message": "m3 六十元", "attrs": [attr("故宫", "门票", "60元"), attr("故宫", "地址", "北京市东城区")]},
        {"message": "m4 好的", "attrs": [attr("故宫", "门票", "60元"), attr("故宫", "门票", "60元")]},
    ]},
    {"messages": [
        {"message": "n0 天坛", "attrs": [attr("天坛", "地址", "北京市东城区")]},
        {"message": "n1 嗯"},
    ]},
]


def write(tmp_path, data, name="test.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return p


def test_history_pairs_from_the_end(tmp_path):
    ex = {e.turn: e for e in load_kdconv(write(tmp_path, CONVERSATIONS), with_knowledge_only=False)
          if e.conversation == 0}
    # turn 1: nothing before the question m0.
    assert ex[1].history == () and ex[1].message == "m0 知道故宫吗？" and ex[1].response == "m1 知道"
    # turn 2: one message before the question m1 (odd) -> the leftover first message is unanswered.
    assert ex[2].history == (("m0 知道故宫吗？", ""),)
    # turn 3: two before the question m2 (even) -> one full pair.
    assert ex[3].history == (("m0 知道故宫吗？", "m1 知道"),)
    # turn 4: three before the question m3 (odd) -> (m0, "") then (m1, m2), oldest first.
    assert ex[4].history == (("m0 知道故宫吗？", ""), ("m1 知道", "m2 门票多少？"))
    assert ex[4].message == "m3 六十元" and ex[4].response == "m4 好的"


def test_knowledge_in_order_and_deduplicated(tmp_path):
    ex = {(e.conversation, e.turn): e for e in load_kdconv(write(tmp_path, CONVERSATIONS))}
    assert ex[(0, 1)].knowledge == (("故宫", "地址", "北京市东城区"),)
    assert ex[(0, 3)].knowledge == (("故宫", "门票", "60元"), ("故宫", "地址", "北京市东城区"))
    assert ex[(0, 4)].knowledge == (("故宫", "门票", "60元"),)


def test_with_knowledge_only(tmp_path):
    p = write(tmp_path, CONVERSATIONS)
    # responses: conversation 0 turns 1-4 and conversation 1 turn 1; with attrs: (0, 1), (0, 3), (0, 4).
    # n0's attrs do not count: a first message answers nothing.
    assert [(e.conversation, e.turn) for e in load_kdconv(p)] == [(0, 1), (0, 3), (0, 4)]
    everything = load_kdconv(p, with_knowledge_only=False)
    assert [(e.conversation, e.turn) for e in everything] == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1)]
    assert everything[1].knowledge == ()


def test_to_row(tmp_path):
    e = load_kdconv(write(tmp_path, CONVERSATIONS))[2]  # conversation 0, turn 4
    assert e.to_row() == {
        "question": "m3 六十元",
        "history": [["m0 知道故宫吗？", ""], ["m1 知道", "m2 门票多少？"]],
        "answers": ["m4 好的"],
        "knowledge": [["故宫", "门票", "60元"]],
    }
    assert json.loads(json.dumps(e.to_row()))["history"][1] == ["m1 知道", "m2 门票多少？"]


@pytest.mark.parametrize("bad", [
    "not a conversation",
    {"messages": [{"message": "a"}, "not a message"]},
    {"messages": [{"message": "a"}, {"attrs": []}]},
    {"messages": [{"message": "a"}, {"message": "b", "attrs": {"name": "x"}}]},
    {"messages": [{"message": "a"}, {"message": "b", "attrs": [{"name": "x", "attrname": "y"}]}]},
])
def test_malformed_conversation_is_reported_and_skipped(tmp_path, bad):
    p = write(tmp_path, [CONVERSATIONS[0], bad, CONVERSATIONS[1]])
    problems: list[str] = []
    examples = load_kdconv(p, with_knowledge_only=False, problems=problems)
    assert len(problems) == 1 and "conversation 1" in problems[0]
    # the bad conversation is dropped whole; the one after it keeps its own index.
    assert sorted({e.conversation for e in examples}) == [0, 2]
    with pytest.raises(RagtuneError, match="conversation 1"):
        load_kdconv(p)


def test_missing_and_non_json_files(tmp_path):
    with pytest.raises(RagtuneError, match="does not exist"):
        load_kdconv(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(RagtuneError, match="not JSON"):
        load_kdconv(bad)
    with pytest.raises(RagtuneError, match="not a list"):
        load_kdconv(write(tmp_path, {"messages": []}))


def test_rows_written_by_to_row_load_back(tmp_path):
    examples = load_kdconv(write(tmp_path, CONVERSATIONS))
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(e.to_row(), ensure_ascii=False) + "\n" for e in examples) + '{"question": "q"}\n',
                    encoding="utf-8")
    problems: list[str] = []
    back = load_dialogue(path, problems=problems)
    assert [(b.history, b.message, b.response, b.knowledge) for b in back] == \
        [(e.history, e.message, e.response, e.knowledge) for e in examples]
    assert len(problems) == 1 and f"line {len(examples) + 1}" in problems[0]


@pytest.mark.skipif(not (KDCONV / "test.json").is_file(), reason="shared KdConv travel not available")
def test_real_kdconv_travel_counts():
    problems: list[str] = []
    examples = load_kdconv(KDCONV / "test.json", problems=problems)
    assert problems == []
    everything = load_kdconv(KDCONV / "test.json", with_knowledge_only=False)
    assert len({e.conversation for e in everything}) == 150
    # 1,787 test messages carry attrs, but 5 of them open their conversation (turn 0), so answer nothing:
    # 1,782 knowledge-grounded responses, the README's count.
    assert len(examples) == 1782
    assert all(e.turn >= 1 and e.knowledge for e in examples)
    assert isinstance(examples[0], DialogueExample)
    # 2,813 utterances in 150 conversations -> 2,663 responses (every message but the first).
    assert len(everything) == 2813 - 150
