import pytest
from fastapi.testclient import TestClient

from ragtune.rag.output import Citation, RagOutput
from ragtune.retrieval.index import update
from ragtune.server import create_app


class FakeRAG:
    def __init__(self):
        self.calls = []

    def ask(self, question, **overrides):
        self.calls.append((question, overrides))
        return RagOutput(question, "1889", -0.5, overrides.get("mode", "concat"),
                         [Citation(1, "a.txt", "Eiffel", "completed in 1889", 1.0, 1.0)])


@pytest.fixture
def client(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.txt").write_text("The Eiffel Tower was completed in 1889.", encoding="utf-8")
    (kb / "b.txt").write_text("Green tea comes from Camellia sinensis.", encoding="utf-8")
    update(tmp_path / "idx", [kb])
    fake = FakeRAG()
    return TestClient(create_app(tmp_path / "idx", rag_factory=lambda: fake)), fake


def test_page_health_search_ask(client):
    c, fake = client
    assert "ragtune" in c.get("/").text
    assert c.get("/api/health").json()["passages"] == 2
    hits = c.post("/api/search", json={"query": "Eiffel Tower", "k": 5}).json()["hits"]
    assert len(hits) == 1 and "1889" in hits[0]["text"]
    out = c.post("/api/ask", json={"question": "When?", "mode": "rag-token", "k": 2}).json()
    assert out["answer"] == "1889" and out["citations"][0]["posterior"] == 1.0
    assert fake.calls == [("When?", {"mode": "rag-token", "k": 2})]


def test_bad_requests(client):
    c, _ = client
    assert c.post("/api/search", json={"query": ""}).status_code == 422
    assert c.post("/api/ask", json={"question": "x", "mode": "nope"}).status_code == 422
    r = c.post("/api/search", json={"query": "tea", "retriever": "dense"})
    assert r.status_code == 400 and "no dense" in r.json()["detail"]
