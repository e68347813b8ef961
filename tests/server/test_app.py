"""The app in-process (TestClient): routes, the JSON error shape of every bad request, auth, limits, metrics,
request ids and the index reload."""
import json
import time

import pytest
from fastapi.testclient import TestClient

from ragtune.config import ServerConfig
from ragtune.retrieval.index import update
from ragtune.server import create_app
from tests.server.fakes import FakeRAG, make_index


@pytest.fixture
def idx(tmp_path):
    return make_index(tmp_path)


def client(idx, fake=None, **kw):
    fake = fake or FakeRAG()
    return TestClient(create_app(idx, rag_factory=lambda kind, gen: fake, **kw)), fake


def sse_events(text):
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines.get("event", "message"), lines["data"]))
    return out


def assert_json_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"]["code"] == status and body["error"]["message"] and body["detail"]
    return body["error"]["message"]


def test_page_health_search_ask(idx):
    c, fake = client(idx)
    page = c.get("/")
    assert "ragtune" in page.text and 'rel="icon"' in page.text
    assert c.get("/favicon.ico").status_code == 200
    assert c.get("/health").json() == {"status": "ok"}
    info = c.get("/api/health").json()
    assert info["passages"] == 2 and info["retrievers"] == ["bm25"]
    hits = c.post("/api/search", json={"query": "Eiffel Tower", "k": 5}).json()["hits"]
    assert len(hits) == 1 and "1889" in hits[0]["text"]
    out = c.post("/api/ask", json={"question": "When?", "mode": "rag-token", "k": 2, "history": [["hi", "hello"]]}).json()
    assert out["answer"] == "the answer to When? is 1889" and out["citations"][0]["posterior"] == 0.9
    assert fake.calls == [("When?", (("hi", "hello"),), {"mode": "rag-token", "k": 2})]


def test_ready_and_preload(idx):
    c, _ = client(idx)
    assert_json_error(c.get("/ready"), 503)
    c.post("/api/ask", json={"question": "x"})
    assert c.get("/ready").json() == {"status": "ready"}
    app = create_app(idx, rag_factory=lambda kind, gen: FakeRAG(), config=ServerConfig(preload=True))
    with TestClient(app) as c2:
        deadline = time.monotonic() + 10
        while c2.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_streaming_ask_is_tokens_then_the_output(idx):
    c, _ = client(idx)
    r = c.post("/api/ask", json={"question": "When?", "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    tokens = [json.loads(d)["text"] for e, d in events if e == "token"]
    assert len(tokens) == 6 and "".join(tokens) == "the answer to When? is 1889"
    assert events[-1][0] == "done" and json.loads(events[-1][1])["citations"][1]["prior"] == 0.25


def test_openai_chat_history_sampling_and_references(idx):
    c, fake = client(idx)
    body = {"model": "anything", "temperature": 0.5, "top_p": 0.8, "max_tokens": 9, "stop": "\n", "k": 3, "mode": "concat",
            "presence_penalty": 0.1, "logit_bias": {}, "user": "u1",  # unknown to us: ignored
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Tell me about the tower"},
                         {"role": "assistant", "content": "It is in Paris."},
                         {"role": "user", "content": [{"type": "text", "text": "When was it built?"}]}]}
    r = c.post("/v1/chat/completions", json=body).json()
    assert r["object"] == "chat.completion" and r["model"] == "anything"
    assert r["choices"][0]["message"] == {"role": "assistant", "content": "the answer to When was it built? is 1889"}
    assert r["usage"] == {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19}
    assert r["choices"][0]["finish_reason"] == "length"
    assert r["references"][0] == {"id": 1, "doc_id": "a.txt", "title": "Eiffel", "text": "completed in 1889", "prior": 0.75, "posterior": 0.9}
    q, history, opts = fake.calls[-1]
    assert q == "When was it built?" and history == (("Tell me about the tower", "It is in Paris."),)
    assert opts == {"mode": "concat", "k": 3, "max_new_tokens": 9, "stop": ["\n"], "decoding": "sample", "temperature": 0.5, "top_p": 0.8}
    models = c.get("/v1/models").json()
    assert models["data"][0]["id"] == "smollm2-135m-instruct"


def test_openai_stream_ends_with_done(idx):
    c, _ = client(idx)
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Q"}], "stream": True})
    datas = [d for _, d in sse_events(r.text)]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks) == "the answer to Q is 1889"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 6
    assert chunks[-1]["references"][0]["doc_id"] == "a.txt"


BAD_SEARCH = [
    b'{"query": "x", "k": 1e400}', b'{"query": "x", "k": -1e400}', b'{"query": "x", "k": NaN}', '{"query": "\\ud800"}'.encode(),
    b'{"query": ""}', b'{"query": 5}', b'{"query": "x", "k": 0}', b'{"query": "x", "k": 101}', b'{"query": "x", "k": "many"}',
    b'[1, 2]', b'"text"', b'null', b'{bad json', b'\xff\xfe\x00', b'', b'{"query": "x", "retriever": "dense"}',
    b'{"query": "x", "retriever": "\\udfff"}',
]
BAD_ASK = [
    b'{"question": "x", "k": 1e400}', '{"question": "\\ud800"}'.encode(), b'{"question": ""}', b'{"question": "x", "mode": "nope"}',
    b'{"question": "x", "max_new_tokens": 100000}', b'{"question": "x", "history": [["a"]]}', b'{"question": "x", "history": "hi"}',
    b'{"question": "x", "temperature": -1}', b'{"question": "x", "decoding": "magic"}', b'{"question": "' + b"y" * 9000 + b'"}',
    b'{"question": "x", "stream": "sometimes"}', b'{"question": "x", "retriever": "dense"}', b'{}',
]
BAD_CHAT = [
    b'{"messages": []}', b'{"messages": [{"role": "assistant", "content": "hi"}]}', b'{"messages": [{"role": "user", "content": "  "}]}',
    b'{"messages": "hi"}', b'{"messages": [{"content": "no role"}]}', '{"messages": [{"role": "user", "content": "\\ud800"}]}'.encode(),
    b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}', b'{"messages": [{"role": "user", "content": "x"}], "n": 2}',
    b'{"messages": [{"role": "user", "content": "x"}], "k": 1000}', b'{"messages": [{"role": "user", "content": "x"}], "top_p": 0}',
]


@pytest.mark.parametrize("route,bodies", [("/api/search", BAD_SEARCH), ("/api/ask", BAD_ASK), ("/v1/chat/completions", BAD_CHAT)])
def test_every_bad_request_is_a_json_4xx(idx, route, bodies, caplog):
    c, fake = client(idx, FakeRAG(fail=ValueError("unknown retriever dense")))
    for body in bodies:
        r = c.post(route, content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (body[:80], r.status_code, r.text[:300])
        assert_json_error(r, r.status_code)
    assert "Traceback" not in caplog.text


def test_wrong_method_and_path_are_json_4xx(idx):
    c, _ = client(idx)
    assert_json_error(c.get("/api/search"), 405)
    assert_json_error(c.get("/nope"), 404)


def test_api_key(idx, monkeypatch):
    c, _ = client(idx, api_key="s3cret")
    assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
    for path in ("/ready", "/metrics", "/api/health", "/v1/models"):
        assert_json_error(c.get(path), 401)
    assert_json_error(c.post("/api/search", json={"query": "tea"}, headers={"Authorization": "Bearer wrong"}), 401)
    r = c.post("/api/search", json={"query": "tea"}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["hits"]
    assert c.get("/v1/models", headers={"authorization": "bearer s3cret"}).status_code == 200


def test_body_limit(idx):
    c, _ = client(idx, config=ServerConfig(max_body_bytes=2048))
    assert_json_error(c.post("/api/search", json={"query": "x" * 5000}), 413)

    def chunked():
        yield b'{"query": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    assert_json_error(c.post("/api/search", content=chunked(), headers={"content-type": "application/json"}), 413)
    assert c.post("/api/search", json={"query": "tea"}).status_code == 200


def test_request_id_metrics_and_access_log(idx, caplog):
    c, _ = client(idx)
    caplog.set_level("INFO", logger="ragtune.server.access")
    r = c.post("/api/search", json={"query": "tea"}, headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert len(c.get("/nope").headers["x-request-id"]) == 32
    c.post("/api/ask", json={"question": "When?"})
    lines = [json.loads(rec.message) for rec in caplog.records if rec.name == "ragtune.server.access"]
    assert {"request_id": "abc-123", "method": "POST", "path": "/api/search", "route": "/api/search", "status": 200}.items() <= lines[0].items()
    text = c.get("/metrics").text
    assert 'ragtune_requests_total{method="POST",route="/api/search",status="200"} 1.0' in text
    assert 'ragtune_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "ragtune_batch_size_count 1.0" in text and "ragtune_generated_tokens_total 6.0" in text
    assert "ragtune_queue_depth 0.0" in text and 'ragtune_request_seconds_bucket{le="0.005",route="/api/ask"}' in text


def test_reloads_the_index_after_an_update(idx, tmp_path):
    c, _ = client(idx)
    assert c.post("/api/search", json={"query": "volcano"}).json()["hits"] == []
    (tmp_path / "kb" / "c.txt").write_text("Mount Etna is a volcano in Sicily.", encoding="utf-8")
    update(idx, [tmp_path / "kb"])
    hits = c.post("/api/search", json={"query": "volcano"}).json()["hits"]
    assert len(hits) == 1 and "Etna" in hits[0]["text"]
    info = c.get("/api/health").json()
    assert info["passages"] == 3 and info["reloads"] == 1
