import io
import json

from tests.helpers.cli import fail, run
from tests.kg.conftest import kg_world  # noqa: F401  (the knowledge-graph fixture)

CONVERSATION = [{"messages": [
    {"message": "李白的朋友是谁？"},
    {"message": "是杜甫。", "attrs": [{"name": "李白", "attrname": "朋友", "attrvalue": "杜甫"}]},
    {"message": "他出生在哪里？"},
    {"message": "他出生在巩县。", "attrs": [{"name": "杜甫", "attrname": "出生地", "attrvalue": "巩县"}]},
    {"message": "谢谢！"},
]}]


def test_convert_kdconv_then_eval_dialogue_history_beats_last_turn(kg_world, tmp_path, capsys):
    src = tmp_path / "conv.json"
    src.write_text(json.dumps(CONVERSATION, ensure_ascii=False), encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    assert "wrote 2 rows" in run(capsys, "convert", "kdconv", src, "--out", rows)
    got = [json.loads(line) for line in rows.read_text(encoding="utf-8").splitlines()]
    assert got[1] == {"question": "他出生在哪里？", "history": [["李白的朋友是谁？", "是杜甫。"]], "answers": ["他出生在巩县。"],
                      "knowledge": [["杜甫", "出生地", "巩县"]], "positive_texts": ["[出生地]"]}
    scores = {}
    for query in ("last-turn", "history"):
        out = json.loads(run(capsys, "eval", "dialogue", "--dataset", rows, "--index", kg_world["index"], "--query", query,
                             "--no-generate", "--json"))
        assert out["n"] == 2 and out["query"] == query and out["bleu4"] is None
        scores[query] = out["knowledge_recall@5"]
    # turn 1 names 李白 itself; turn 2 says only "he": its entity (杜甫) is in the history
    assert scores == {"last-turn": 0.5, "history": 1.0}
    err = fail(capsys, "eval", "dialogue", "--dataset", tmp_path / "nope.json", "--index", kg_world["index"])
    assert "does not exist" in err


def test_chat_json_shows_the_tracked_entities(kg_world, tmp_path, capsys, monkeypatch):
    from tests.helpers.tiny_lm import tiny_causal_lm

    lm = tiny_causal_lm(tmp_path / "lm", ["李白的朋友是谁？ 杜甫", "他出生在哪里？ 巩县"], layers=1, vocab_size=200)
    monkeypatch.setattr("sys.stdin", io.StringIO("李白的朋友是谁？\n他出生在哪里？\n"))
    out = run(capsys, "chat", "--index", kg_world["index"], "--model", lm, "--max-new-tokens", "2", "-k", "2", "--json")
    turns = [json.loads(line) for line in out.splitlines()]
    assert len(turns) == 2
    assert turns[0]["retrieval"]["entities"][0][0] == "李白"
    # the second message names nobody: 李白 is tracked from the first turn
    assert turns[1]["question"] == "他出生在哪里？" and "李白" in [n for n, _ in turns[1]["retrieval"]["entities"]]
    assert turns[1]["citations"] and all(c["title"] in ("李白", "杜甫") for c in turns[1]["citations"])


def test_eval_dialogue_passes_decoding_options(kg_world, tmp_path, capsys, monkeypatch):
    from ragtune.evaluation import dialogue

    src = tmp_path / "conv.json"
    src.write_text(json.dumps(CONVERSATION, ensure_ascii=False), encoding="utf-8")
    seen = {}
    real = dialogue.evaluate_dialogue

    def spy(rag, examples, **kw):
        seen.update(kw)
        return real(rag, examples, **kw | {"generate": False})

    monkeypatch.setattr(dialogue, "evaluate_dialogue", spy)
    run(capsys, "eval", "dialogue", "--dataset", src, "--index", kg_world["index"], "--decoding", "beam",
        "--min-new-tokens", "3", "--max-new-tokens", "5", "--json")
    assert {k: seen[k] for k in ("decoding", "min_new_tokens", "max_new_tokens")} == {"decoding": "beam", "min_new_tokens": 3,
                                                                                    "max_new_tokens": 5}
