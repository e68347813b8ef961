"""The real server on 127.0.0.1: the official openai client, concurrent requests batched, searches beside a
running generation, the bounded queue, disconnects and timeouts."""
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ragtune.config import ServerConfig
from ragtune.server import create_app
from tests.server.fakes import FakeRAG, make_index
from tests.server.live import live_server

openai = pytest.importorskip("openai", reason="the openai client is in ragtune[server]'s test extras")


@pytest.fixture
def idx(tmp_path):
    return make_index(tmp_path)


def serve(idx, fake, **cfg):
    return live_server(create_app(idx, rag_factory=lambda kind, gen: fake, config=ServerConfig(**cfg), api_key="k1"))


AUTH = {"Authorization": "Bearer k1"}


def test_openai_client_plain_and_streaming(idx):
    fake = FakeRAG(delay=0.01)
    with serve(idx, fake) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="k1", max_retries=0)
        assert [m.id for m in client.models.list()] == ["smollm2-135m-instruct"]
        r = client.chat.completions.create(model="ragtune", messages=[{"role": "user", "content": "When?"}], max_tokens=16,
                                           extra_body={"k": 2, "mode": "concat"})
        assert r.choices[0].message.content == "the answer to When? is 1889"
        assert r.usage.completion_tokens == 6 and r.usage.total_tokens == 16
        assert r.model_extra["references"][0]["title"] == "Eiffel"
        stream = client.chat.completions.create(model="ragtune", stream=True, temperature=0,
                                                messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                                          {"role": "user", "content": "When?"}])
        chunks = list(stream)
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) == 6 and "".join(pieces) == "the answer to When? is 1889"
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].model_extra["references"][1]["doc_id"] == "b.txt"
        assert fake.calls[-1][1] == (("a", "b"),) and fake.calls[-1][2]["decoding"] == "greedy"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="ragtune", messages=[{"role": "assistant", "content": "hi"}])


def test_concurrent_answers_share_batches_and_searches_do_not_wait(idx):
    fake = FakeRAG(delay=0.4)  # 6 words: over two seconds a batch
    with serve(idx, fake, max_batch_size=8, max_wait_ms=100) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        def ask(i):
            return http.post("/api/ask", json={"question": f"q{i}"})

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(ask, i) for i in range(8)]
            time.sleep(0.4)  # the batch is decoding now
            t0 = time.perf_counter()
            search = http.post("/api/search", json={"query": "tea"})
            search_s = time.perf_counter() - t0
            running = not all(f.done() for f in futures)
            answers = [f.result() for f in futures]
        assert search.status_code == 200 and search.json()["hits"]
        assert running and search_s < 1.0, search_s  # answered while the generation ran, not after it
        assert all(r.status_code == 200 for r in answers)
        assert sorted(r.json()["answer"] for r in answers) == sorted(f"the answer to q{i} is 1889" for i in range(8))
        assert max(len(b) for b in fake.batches) > 1 and sum(map(len, fake.batches)) == 8
        metrics = http.get("/metrics").text
        assert "ragtune_batch_size_count" in metrics


def test_full_queue_is_429_with_retry_after(idx):
    fake = FakeRAG(delay=0.1)
    with serve(idx, fake, queue_size=2, max_batch_size=1) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        with ThreadPoolExecutor(6) as pool:
            rs = list(pool.map(lambda i: http.post("/api/ask", json={"question": f"q{i}"}), range(6)))
    codes = sorted(r.status_code for r in rs)
    assert 200 in codes and 429 in codes and set(codes) <= {200, 429}, codes
    busy = next(r for r in rs if r.status_code == 429)
    assert busy.headers["retry-after"] == "1" and busy.json()["error"]["type"] == "rate_limit_error"


def test_a_client_that_leaves_stops_its_generation(idx):
    fake = FakeRAG(delay=0.2)
    with serve(idx, fake) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        with http.stream("POST", "/api/ask", json={"question": "q", "stream": True}) as r:
            assert r.status_code == 200
            first = next(r.iter_lines())
            assert first.startswith("event: token")
        deadline = time.monotonic() + 5
        while fake.stopped_rows == 0:
            assert time.monotonic() < deadline, "the generation went on after the client left"
            time.sleep(0.05)


def test_timeout_is_504_and_stops_the_row(idx):
    fake = FakeRAG(delay=0.3)
    with serve(idx, fake, timeout_s=0.5) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        r = http.post("/api/ask", json={"question": "q"})
        assert r.status_code == 504 and "within" in r.json()["error"]["message"]
        deadline = time.monotonic() + 5
        while fake.stopped_rows == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_real_tiny_generator_streams_batched_answers(tmp_path, idx):
    """A real (tiny, random) generator behind the server: streamed pieces are the answer, batched."""
    from ragtune.generation import Generator
    from ragtune.rag.model import RAG
    from tests.helpers.tiny_lm import tiny_causal_lm
    from tests.rag.fakes import DictStore, FakeRetriever

    gen = Generator(str(tiny_causal_lm(tmp_path / "lm", chat_template=True)), max_new_tokens=12)
    rag = RAG(FakeRetriever(), gen, DictStore(), k=2)
    batches = []
    real = rag.ask_batch

    def spy(questions, **kw):
        batches.append(len(questions))
        return real(questions, **kw)

    rag.ask_batch = spy
    app = create_app(idx, rag_factory=lambda kind, g: rag, config=ServerConfig(max_wait_ms=200))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        def stream(i):
            with http.stream("POST", "/v1/chat/completions",
                             json={"messages": [{"role": "user", "content": f"When was the Eiffel Tower completed? {i}"}], "stream": True}) as r:
                datas = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
            assert datas[-1] == "[DONE]"
            chunks = [json.loads(d) for d in datas[:-1]]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            return text, chunks[-1]

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(stream, range(4)))
    assert max(batches) > 1
    for text, last in results:
        assert last["rag"]["answer"] == text and len(last["references"]) == 2
        assert last["usage"]["prompt_tokens"] > 20 and 0 < last["usage"]["completion_tokens"] <= 12
