"""The chat route answers a conversation as `ragtune chat` does: the history's entities steer retrieval."""
from fastapi.testclient import TestClient

from ragtune.config import ServerConfig
from ragtune.server import create_app
from tests.kg.conftest import kg_world  # noqa: F401  (the knowledge-graph fixture)


def test_openai_chat_tracks_the_entities_of_earlier_turns(kg_world, tmp_path):
    from ragtune.rag.model import RAG
    from tests.helpers.tiny_lm import tiny_causal_lm

    lm = tiny_causal_lm(tmp_path / "lm", ["李白的朋友是谁？ 杜甫", "他出生在哪里？ 巩县"], layers=1, vocab_size=200)
    cfg = kg_world["cfg"].updated(generator={"model": str(lm), "max_new_tokens": 2})
    app = create_app(kg_world["index"], rag_factory=lambda kind, gen: RAG.from_index(kg_world["index"], config=cfg),
                     config=ServerConfig(preload=True))
    with TestClient(app) as c:
        body = {"k": 2, "messages": [{"role": "user", "content": "李白的朋友是谁？"}, {"role": "assistant", "content": "是杜甫。"},
                                     {"role": "user", "content": "他出生在哪里？"}]}
        r = c.post("/v1/chat/completions", json=body).json()
        retrieval = r["rag"]["retrieval"]
        assert [n for n, _ in retrieval["entities"]] == ["杜甫", "李白"] and retrieval["query"] == "他出生在哪里？ 杜甫 李白"
        assert r["references"][0]["text"].startswith("[出生地] 杜甫")
        # a lone question is answered as `ask` answers it: no conversation, no tracking
        lone = c.post("/v1/chat/completions", json={"k": 2, "messages": [{"role": "user", "content": "李白的朋友是谁？"}]}).json()
        assert "retrieval" not in lone["rag"] and lone["references"][0]["title"] == "李白"
