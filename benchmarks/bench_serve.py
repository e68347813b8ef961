"""Load test of `ragtune serve` on loopback (127.0.0.1 only): the micro-batching server of issue 13 against the
one-at-a-time server it replaced (``serve_baseline.py``, the app of commit 1fd87e5), in one process, over one
RAG object (SmolLM2-135M-Instruct, bm25, short answers), so both serve the same model.

Measured, bounded in count and time (every phase stops issuing requests at its deadline and waits for what
it sent):

* ``/api/search`` at 8 and 32 concurrent clients: requests/s and p50/p95/p99 latency, both servers;
* answers at 8 and 32 concurrent clients: ``/v1/chat/completions`` on the new server, ``/api/ask`` on the old
  (the old one has no OpenAI route; both answer through ``RAG.ask`` / ``ask_batch`` with the same options);
* search p95 of one sequential client while nothing else runs, and while the 8-client answer load runs;
* a mix of bad requests (k=1e400, lone surrogates, oversize bodies, no API key, bad JSON...): all must be 4xx;
* lost requests (sent, no HTTP answer) and 5xx answers over the whole run.

    python benchmarks/bench_serve.py                  # 5-10 minutes on a busy 2-core machine
    python benchmarks/bench_serve.py --answers-c8 8 --answers-c32 8 --baseline-answers 4 --search-requests 50   # quicker

Writes ``benchmarks/results/serve.json``.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

QUESTIONS = [
    "What is the capital of Algeria?", "Who wrote the novel Atlas Shrugged?", "Who directed the film An American in Paris?",
    "What is anarchism?", "Where is Andorra?", "What did Aristotle write about?", "What is an atom made of?",
    "Who was Abraham Lincoln?", "What is the Amazon River?", "What is algebra?",
]
SEARCHES = ["who wrote Atlas Shrugged", "capital of Algeria", "greatest common divisor algorithm", "Andorra", "anarchism",
            "Aristotle logic", "atomic nucleus", "American football", "Alabama history", "Academy Awards"]
KEY = "bench-key"


def _load_demo() -> Any:
    spec = importlib.util.spec_from_file_location("ragtune_demo", ROOT / "examples" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Served:
    """An app under uvicorn on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app: Any):
        from ragtune.cli.serve import listen

        self.sock = listen("127.0.0.1", 0)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False, timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> "Served":
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def summary(latencies: list[float], statuses: list[int], lost: int, seconds: float) -> dict[str, Any]:
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    ok = sum(200 <= s < 300 for s in statuses)
    return {"requests": len(statuses) + lost, "ok": ok, "errors_4xx": sum(400 <= s < 500 for s in statuses),
            "errors_5xx": sum(s >= 500 for s in statuses), "lost": lost, "seconds": round(seconds, 2),
            "rps": round(ok / seconds, 3) if seconds else 0.0,
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


async def load(url: str, path: str, bodies: list[dict], *, clients: int, n: int, deadline: float,
               headers: dict[str, str] | None = None, timeout: float = 900) -> dict[str, Any]:
    """``n`` POSTs from ``clients`` concurrent clients (each waits for its answer before sending the next)."""
    latencies: list[float] = []
    statuses: list[int] = []
    lost = [0]
    counter = iter(range(n))

    async def client(http: httpx.AsyncClient) -> None:
        for i in counter:
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            try:
                r = await http.post(path, json=bodies[i % len(bodies)])
            except httpx.HTTPError:
                lost[0] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            statuses.append(r.status_code)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return summary(latencies, statuses, lost[0], time.perf_counter() - start)


async def probe(url: str, stop: asyncio.Event, headers: dict[str, str] | None, *, n: int | None = None,
                pause: float = 0.05) -> dict[str, Any]:
    """One client searching in a loop until ``stop`` (or ``n`` searches): the latency a user of search sees."""
    latencies, statuses, i = [], [], 0
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        while not stop.is_set() and (n is None or i < n):
            t0 = time.perf_counter()
            r = await http.post("/api/search", json={"query": SEARCHES[i % len(SEARCHES)], "k": 5})
            latencies.append(time.perf_counter() - t0)
            statuses.append(r.status_code)
            i += 1
            await asyncio.sleep(pause)
    return summary(latencies, statuses, 0, time.perf_counter() - start)


async def answers_with_probe(url: str, path: str, bodies: list[dict], *, clients: int, n: int, deadline: float,
                             headers: dict[str, str] | None) -> tuple[dict, dict]:
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(url, stop, headers))
    result = await load(url, path, bodies, clients=clients, n=n, deadline=deadline, headers=headers)
    stop.set()
    return result, await probing


def bad_requests(url: str) -> dict[str, Any]:
    """A mix of malformed, oversize, unbounded and unauthenticated requests; every one must be a 4xx with JSON."""
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    cases = [
        ("POST", "/api/search", b'{"query": "x", "k": 1e400}', auth), ("POST", "/api/search", '{"query": "\\ud800"}'.encode(), auth),
        ("POST", "/api/ask", b'{"question": "x", "k": 1e400}', auth), ("POST", "/api/ask", '{"question": "\\udfff"}'.encode(), auth),
        ("POST", "/api/ask", b'{"question": ""}', auth), ("POST", "/api/search", b'{bad json', auth), ("POST", "/api/search", b"[1]", auth),
        ("POST", "/api/search", b'{"query": "x", "k": 100000}', auth), ("POST", "/api/search", b'{"query": "' + b"x" * 2_000_000 + b'"}', auth),
        ("POST", "/v1/chat/completions", b'{"messages": []}', auth),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}', auth),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "n": 3}', auth),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "assistant", "content": "x"}]}', auth),
        ("POST", "/api/ask", b'{"question": "x", "mode": "nope"}', auth), ("POST", "/api/ask", b'{"question": "x", "history": 3}', auth),
        ("POST", "/api/search", b'{"query": "x", "retriever": "dense"}', auth), ("GET", "/api/search", b"", auth), ("GET", "/nope", b"", auth),
        ("POST", "/api/search", b'{"query": "tea"}', {"Content-Type": "application/json"}),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}', {"Authorization": "Bearer wrong"}),
        ("GET", "/v1/models", b"", {}), ("GET", "/metrics", b"", {}),
    ]
    statuses, json_bodies = [], 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for method, path, body, headers in cases * 2:
            r = http.request(method, path, content=body or None, headers=headers)
            statuses.append(r.status_code)
            try:
                json_bodies += bool(r.json().get("error"))
            except ValueError:
                pass
    return {"requests": len(statuses), "all_4xx": all(400 <= s < 500 for s in statuses), "json_error_bodies": json_bodies,
            "statuses": sorted(set(statuses))}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from ragtune.config import Config, ServerConfig
    from ragtune.rag.model import RAG
    from ragtune.retrieval.index import update
    from ragtune.server import create_app
    from serve_baseline import create_app as create_baseline_app

    demo = _load_demo()
    index = args.index
    if not (index / "manifest.json").exists():
        update(index, [demo.wiki_corpus(ROOT / ".cache" / "demo" / "wiki.jsonl")], retrievers=["bm25"], config=Config())
    cfg = Config().updated(generator={"max_new_tokens": args.max_tokens})
    rag = RAG.from_index(index, retriever="bm25", k=args.k, config=cfg)
    rag.ask(QUESTIONS[0])  # load and warm the model once; both servers share it (float32, the old server's)
    new_rag = rag
    if args.dtype != "float32":  # the new server's generator weights (`serve --dtype`): the same model in bf16
        new_rag = RAG.from_index(index, retriever="bm25", k=args.k, config=cfg.updated(generator={"dtype": args.dtype}))
        new_rag.ask(QUESTIONS[0])
    chat = [{"model": "smollm2", "messages": [{"role": "user", "content": q}], "max_tokens": args.max_tokens} for q in QUESTIONS]
    native = [{"question": q} for q in QUESTIONS]
    searches = [{"query": q, "k": 10} for q in SEARCHES]
    auth = {"Authorization": f"Bearer {KEY}"}
    out: dict[str, Any] = {}

    def phase(name: str) -> float:
        """Announce a phase; its deadline for issuing new requests."""
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        return time.monotonic() + args.phase_seconds

    server_cfg = ServerConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, queue_size=256, timeout_s=900)
    new_app = create_app(index, rag_factory=lambda kind, gen: new_rag, config=server_cfg, api_key=KEY)
    with Served(new_app) as s:
        new: dict[str, Any] = {}
        phase("new: search, idle probe")
        new["search_idle_probe"] = await probe(s.url, asyncio.Event(), auth, n=args.probe_requests)
        for c, n in ((8, args.search_requests), (32, args.search_requests)):
            new[f"search_c{c}"] = await load(s.url, "/api/search", searches, clients=c, n=n, deadline=phase(f"new: search c{c}"), headers=auth)
        new["answers_c8"], new["search_during_generation_probe"] = await answers_with_probe(
            s.url, "/v1/chat/completions", chat, clients=8, n=args.answers_c8, deadline=phase("new: answers c8 (+ search probe)"), headers=auth)
        new["answers_c32"] = await load(s.url, "/v1/chat/completions", chat, clients=32, n=args.answers_c32,
                                        deadline=phase("new: answers c32"), headers=auth)
        phase("new: bad requests")
        new["bad_requests"] = bad_requests(s.url)
        metrics = httpx.get(s.url + "/metrics", headers=auth).text
        new["batch_sizes"] = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                              if line.startswith(("ragtune_batch_size_count", "ragtune_batch_size_sum"))}
    out["new"] = new

    old_app = create_baseline_app(index, rag_factory=lambda: rag)
    with Served(old_app) as s:
        old: dict[str, Any] = {}
        phase("old: search, idle probe")
        old["search_idle_probe"] = await probe(s.url, asyncio.Event(), None, n=args.probe_requests)
        for c, n in ((8, args.search_requests), (32, args.search_requests)):
            old[f"search_c{c}"] = await load(s.url, "/api/search", searches, clients=c, n=n, deadline=phase(f"old: search c{c}"))
        old["answers_c8"], old["search_during_generation_probe"] = await answers_with_probe(
            s.url, "/api/ask", native, clients=8, n=args.baseline_answers, deadline=phase("old: answers c8 (+ search probe)"), headers=None)
    out["old"] = old
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=ROOT / ".cache" / "bench_serve" / "idx")
    ap.add_argument("-k", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=12)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--dtype", default="float32", help="The new server's generator weights (serve --dtype): float32, "
                    "bfloat16 or auto; the one-at-a-time server always runs float32, as it did.")
    ap.add_argument("--search-requests", type=int, default=200, help="per search phase (8 and 32 clients, both servers)")
    ap.add_argument("--probe-requests", type=int, default=60, help="sequential searches of the idle probe")
    ap.add_argument("--answers-c8", type=int, default=16)
    ap.add_argument("--answers-c32", type=int, default=32)
    ap.add_argument("--baseline-answers", type=int, default=8, help="answers of the one-at-a-time server (8 clients)")
    ap.add_argument("--phase-seconds", type=float, default=300, help="a phase stops issuing new requests after this")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = ap.parse_args()

    t0 = time.time()
    load_at_start = os.getloadavg()
    res = asyncio.run(run(args))
    new, old = res["new"], res["old"]
    everything = [v for side in (new, old) for v in side.values() if isinstance(v, dict) and "lost" in v]
    report = {
        "answer_throughput_ratio_c8": round(new["answers_c8"]["rps"] / old["answers_c8"]["rps"], 2) if old["answers_c8"]["rps"] else None,
        "search_p95_ms_idle": new["search_idle_probe"]["p95_ms"],
        "search_p95_ms_during_generation": new["search_during_generation_probe"]["p95_ms"],
        "old_search_p95_ms_during_generation": old["search_during_generation_probe"]["p95_ms"],
        "errors_5xx": sum(v["errors_5xx"] for v in everything),
        "lost": sum(v["lost"] for v in everything),
        "requests": sum(v["requests"] for v in everything) + new["bad_requests"]["requests"],
        "bad_requests_all_4xx": new["bad_requests"]["all_4xx"],
        "settings": {"model": "smollm2-135m-instruct", "retriever": "bm25", "k": args.k, "max_tokens": args.max_tokens,
                     "max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms,
                     "new_server_dtype": args.dtype, "old_server_dtype": "float32", "corpus": "106 Wikipedia articles (make demo)"},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg(), "python": platform.python_version()},
        "seconds": round(time.time() - t0, 1),
        "new": new, "old": old,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("new", "old")}, indent=2))


if __name__ == "__main__":
    main()
