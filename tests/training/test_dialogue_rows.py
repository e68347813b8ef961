"""Chat-turn rows (with a ``history``) train as ``RAG.chat_turn`` answers: retrieved with the conversation's query,
prompted as a reply."""
import json

import numpy as np

from ragtune.corpus.squad import QARecord, parse_qa_row
from tests.kg.conftest import kg_world  # noqa: F401  (the knowledge-graph fixture)

ROWS = [
    {"question": "他出生在哪里？", "history": [["李白的朋友是谁？", "是杜甫。"]], "answers": ["巩县。"], "positive_texts": ["[出生地]"]},
    {"question": "他的朋友呢？", "history": [["杜甫出生在哪里？", "巩县。"]], "answers": ["李白。"], "positive_texts": ["[inverse 朋友]"]},
]


def test_history_is_read_and_written_back():
    r = parse_qa_row(ROWS[0])
    assert r.history == [("李白的朋友是谁？", "是杜甫。")] and r.to_row()["history"] == ROWS[0]["history"]
    assert parse_qa_row({"question": "q", "answers": ["a"]}).history is None
    import pytest

    with pytest.raises(ValueError, match="history"):
        parse_qa_row({"question": "q", "answers": ["a"], "history": [["only one"]]})


def test_objective_retrieves_chat_rows_with_the_conversation_and_trains(kg_world, tmp_path):
    from ragtune.training.objectives import Objective
    from ragtune.training.run import fine_tune
    from tests.helpers.tiny_lm import tiny_causal_lm

    lm = tiny_causal_lm(tmp_path / "lm", [r["question"] + " " + r["answers"][0] for r in ROWS], layers=1, vocab_size=200)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS * 2), encoding="utf-8")
    cfg = kg_world["cfg"].updated(generator={"model": str(lm), "max_new_tokens": 2}, rag={"k": 2},
                                  training={"objective": "rag", "batch_size": 2, "max_steps": 2, "lr": 1e-3,
                                            "encoder_lr": 1e-3, "warmup_ratio": 0.0, "eval_every": 1000, "save_every": 1000})
    trainer, result = fine_tune(kg_world["index"], train, tmp_path / "out", config=cfg, progress=False)
    assert result.steps == 2 and all(np.isfinite(result.losses))
    batch = [parse_qa_row(r) for r in ROWS] + [QARecord("李白的朋友是谁？", ["杜甫"])]
    queries = trainer.objective.queries(batch)
    # the chat rows carry the entities of their history, the latest named first; a plain question stays a string
    assert [n for n, _ in queries[0].topics] == ["杜甫", "李白"] and [n for n, _ in queries[1].topics] == ["巩县", "杜甫"]
    assert type(queries[2]) is str and queries[2] == "李白的朋友是谁？"
    hits = trainer.rag.retrieve(queries[:1], 2)
    assert trainer.rag.store.get([int(hits.ids[0, 0])])[0].title == "杜甫"
    assert Objective.histories(batch) == [[("李白的朋友是谁？", "是杜甫。")], [("杜甫出生在哪里？", "巩县。")], ()]
