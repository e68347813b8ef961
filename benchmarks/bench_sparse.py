"""Sparse retrieval benchmark: ragtune BM25 (lucene) vs bm25s (numpy and numba backends) vs rank_bm25, on SciFact.

Every system gets the same tokens: ragtune's default Analyzer (NFKC, lowercase, \\w\\w+ tokens, Lucene English
stopwords, Snowball English stemming). Index time includes tokenising, for everyone; query time includes
tokenising the queries, for everyone. Each (system, size, repetition) runs in a fresh subprocess, so peak memory
is the peak RSS (VmHWM, reset just before indexing) minus RSS before indexing, and no run warms another's caches.
Repetitions are interleaved across systems (the machine is shared) and timings are medians.

    .venv/bin/python benchmarks/bench_sparse.py --sizes 5183,100000,500000 --reps 5,3,2

Sizes above SciFact's 5,183 documents replicate the corpus with distinct ids (rank_bm25 runs on SciFact only).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from shared_data import DATASETS, reset_peak, rss_mb  # benchmarks/shared_data.py: ../shared/datasets

DATA = DATASETS / "scifact"
ROOT = Path(__file__).resolve().parent
K_EVAL, K_SPEED = 100, 10


def load_scifact() -> tuple[list[str], list[str], dict[str, str], dict[str, dict[str, int]]]:
    doc_ids, texts = [], []
    with open(DATA / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            doc_ids.append(d["_id"])
            texts.append(d["title"] + " " + d["text"])
    queries = {}
    with open(DATA / "queries.jsonl") as f:
        for line in f:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    qrels: dict[str, dict[str, int]] = {}
    with open(DATA / "qrels" / "test.tsv") as f:
        next(f)
        for line in f:
            qid, did, score = line.split()
            qrels.setdefault(qid, {})[did] = int(score)
    return doc_ids, texts, queries, qrels


def timed(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def worker(system: str, size: int, query_reps: int, n_latency: int) -> dict:
    from ragtune.corpus.types import Passage
    from ragtune.evaluation.metrics import retrieval_scores
    from ragtune.text import Analyzer

    doc_ids, texts, queries, qrels = load_scifact()
    reps = -(-size // len(texts))
    texts = (texts * reps)[:size]
    doc_ids = [d if i < len(doc_ids) else f"{d}#{i // len(doc_ids)}" for i, d in enumerate((doc_ids * reps)[:size])]
    test_q = [q for q in qrels if q in queries]
    test_texts = [queries[q] for q in test_q]
    all_q = list(queries.values())
    analyzer = Analyzer()
    out: dict = {"system": system, "size": size}

    if system == "ragtune":
        from ragtune.retrieval.sparse import BM25Retriever

        passages = [Passage(id=i, doc_id=d, text=t) for i, (d, t) in enumerate(zip(doc_ids, texts))]
        rss0 = rss_mb("VmRSS")
        reset_peak()
        t = time.perf_counter()
        model = BM25Retriever()
        model.add(passages)
        out["index_s"] = time.perf_counter() - t
        out["peak_mb"] = rss_mb("VmHWM") - rss0
        model.search(all_q[:8], K_SPEED)  # warm-up
        searchers = {"ragtune": lambda qs, k: model.search(qs, k).ids}
    elif system == "bm25s":
        import bm25s

        rss0 = rss_mb("VmRSS")
        reset_peak()
        t = time.perf_counter()
        model = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
        model.index(analyzer.batch(texts), show_progress=False)
        out["index_s"] = time.perf_counter() - t
        out["peak_mb"] = rss_mb("VmHWM") - rss0

        def make(backend: str, n_threads: int):
            def search(qs, k):
                model.backend = backend  # the same index serves both backends
                return model.retrieve(analyzer.batch(qs), k=k, show_progress=False, n_threads=n_threads)[0]
            return search

        searchers = {"bm25s": make("numpy", 0), "bm25s_t2": make("numpy", 2),
                     "bm25s_numba": make("numba", 0), "bm25s_numba_t2": make("numba", 2)}
        for s in searchers.values():  # warm-up, and numba's JIT compile
            s(all_q[:8], K_SPEED)
    elif system == "rank_bm25":
        from rank_bm25 import BM25Okapi

        rss0 = rss_mb("VmRSS")
        reset_peak()
        t = time.perf_counter()
        model = BM25Okapi(analyzer.batch(texts))
        out["index_s"] = time.perf_counter() - t
        out["peak_mb"] = rss_mb("VmHWM") - rss0

        def search_rank(qs, k):
            rows = []
            for toks in analyzer.batch(qs):
                s = model.get_scores(toks)
                top = np.argpartition(-s, k)[:k]
                rows.append(top[np.argsort(-s[top])])
            return np.array(rows)

        searchers = {"rank_bm25": search_rank}
    else:
        raise SystemExit(f"unknown system {system}")

    speed_queries = all_q if system != "rank_bm25" else test_texts
    for name, search in searchers.items():
        res: dict = {}
        if size == 5183:
            ranked = search(test_texts, K_EVAL)
            run = {q: [doc_ids[int(i)] for i in row if i >= 0] for q, row in zip(test_q, ranked)}
            res.update(retrieval_scores(run, qrels))
        secs, _ = timed(lambda: search(speed_queries, K_SPEED), query_reps)
        res["qps"] = len(speed_queries) / secs
        lat = []
        for q in all_q[:n_latency]:
            t = time.perf_counter()
            search([q], K_SPEED)
            lat.append(time.perf_counter() - t)
        res["latency_ms"] = 1000 * statistics.median(lat)
        out[name] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5183", help="comma-separated corpus sizes (5183 = SciFact itself)")
    ap.add_argument("--reps", default="5", help="repetitions per size, comma-separated (one value = all sizes)")
    ap.add_argument("--systems", default="ragtune,bm25s,rank_bm25")
    ap.add_argument("--out", default=str(ROOT / "results" / "sparse.json"))
    ap.add_argument("--markdown", action="store_true", help="print the table of an existing --out file and exit")
    ap.add_argument("--append", action="store_true", help="add these runs to the runs already in --out")
    ap.add_argument("--import-log", help="add runs from a log of an earlier invocation (index, memory, q/s lines)")
    ap.add_argument("--worker", nargs=2, metavar=("SYSTEM", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    if args.worker:
        size = int(args.worker[1])
        print(json.dumps(worker(args.worker[0], size, 3 if size <= 5183 else 1, 200 if size <= 100_000 else 50)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    reps = [int(r) for r in args.reps.split(",")]
    reps = reps * len(sizes) if len(reps) == 1 else reps
    systems = args.systems.split(",")
    runs: dict[int, list[dict]] = {}
    out = Path(args.out)
    if args.append and out.exists():
        runs = {int(k): v for k, v in json.loads(out.read_text()).get("runs", {}).items()}
    if args.import_log:
        for r in parse_log(Path(args.import_log)):
            runs.setdefault(r["size"], []).append(r)
    for size, n_rep in zip(sizes, reps):
        for rep in range(n_rep):
            for system in systems:  # interleaved: each repetition runs every system once
                if system == "rank_bm25" and (size != 5183 or rep >= 2):
                    continue
                proc = subprocess.run([sys.executable, __file__, "--worker", system, str(size)], capture_output=True,
                                      text=True, env={**os.environ, "TQDM_DISABLE": "1", "DISABLE_TQDM": "1"})
                if proc.returncode:
                    sys.exit(proc.stderr)
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                runs.setdefault(size, []).append(r)
                report(runs, out, quiet=True)  # after every run, so an interruption loses nothing
                print(f"size {size} rep {rep} {system}: index {r['index_s']:.2f}s peak {r['peak_mb']:.0f}MB " +
                      " ".join(f"{k}={v['qps']:.0f}q/s" for k, v in r.items() if isinstance(v, dict)), flush=True)
    report(runs, out)


def _median(rs: list[dict], *path: str) -> float | None:
    vals = []
    for r in rs:
        v = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def markdown(result: dict) -> str:
    """The RESULTS.md table: one row per (size, system)."""
    lines = ["| docs | system | nDCG@10 | R@100 | index s | peak MB | batch q/s | latency ms |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for size, e in result["sizes"].items():
        for name in ("ragtune", "bm25s", "bm25s_t2", "bm25s_numba", "bm25s_numba_t2", "rank_bm25"):
            if name not in e or "qps" not in e[name]:
                continue
            m, idx = e[name], e["index"].get("bm25s" if name.startswith("bm25s") else name, {})
            nd = f"{m['ndcg@10']:.4f}" if m.get("ndcg@10") is not None else ""
            rc = f"{m['recall@100']:.4f}" if m.get("recall@100") is not None else ""
            lat = f"{m['latency_ms']:.3f}" if m.get("latency_ms") is not None else "n/a"
            lines.append(f"| {int(size):,} | {name} | {nd} | {rc} | {idx.get('index_s', float('nan')):.2f} | "
                         f"{idx.get('peak_mb', float('nan')):.0f} | {m['qps']:,.0f} | {lat} |")
    lines += ["", "| docs | " + " | ".join(k for k in _RATIO_KEYS) + " |", "|---:|" + "---:|" * len(_RATIO_KEYS)]
    for size, e in result["sizes"].items():
        lines.append(f"| {int(size):,} | " + " | ".join(f"{e[k]:.2f}" if e.get(k) is not None else "" for k in _RATIO_KEYS) + " |")
    return "\n".join(lines)


_RATIO_KEYS = ("index_time_ratio_bm25s", "memory_ratio_bm25s", "qps_ratio_bm25s", "qps_ratio_bm25s_t2",
               "qps_ratio_bm25s_numba", "qps_ratio_bm25s_numba_t2", "latency_ratio_bm25s", "latency_ratio_bm25s_numba")


def parse_log(path: Path) -> list[dict]:
    """Runs from this script's progress lines ("size S rep R SYSTEM: index Xs peak YMB name=Zq/s ...")."""
    import re

    runs = []
    for line in path.read_text().splitlines():
        m = re.match(r"size (\d+) rep \d+ (\w+): index ([\d.]+)s peak ([\d.]+)MB (.*)", line)
        if m:
            r = {"system": m[2], "size": int(m[1]), "index_s": float(m[3]), "peak_mb": float(m[4]), "from_log": True}
            for name, qps in re.findall(r"(\w+)=([\d.]+)q/s", m[5]):
                r[name] = {"qps": float(qps)}
            runs.append(r)
    return runs


def report(runs: dict[int, list[dict]], out: Path, quiet: bool = False) -> None:
    result: dict = {"sizes": {}, "runs": {str(k): v for k, v in sorted(runs.items())},
                    "command": "python benchmarks/bench_sparse.py " + " ".join(sys.argv[1:]),
                    "tokens": "ragtune Analyzer defaults for every system", "memory": "peak RSS delta (VmHWM) while indexing",
                    "k_speed": K_SPEED, "k_eval": K_EVAL, "machine": f"{os.cpu_count()} cores, shared"}
    for size, rs in sorted(runs.items()):
        by = {s: [r for r in rs if r["system"] == s] for s in {r["system"] for r in rs}}
        entry: dict = {"reps": {s: len(v) for s, v in by.items()}}
        entry["index"] = {}
        for sysname, srs in by.items():
            entry["index"][sysname] = {"index_s": _median(srs, "index_s"), "peak_mb": _median(srs, "peak_mb")}
            for key in {k for r in srs for k, v in r.items() if isinstance(v, dict)}:
                metrics = {m for r in srs if isinstance(r.get(key), dict) for m in r[key]}
                entry[key] = {m: _median(srs, key, m) for m in sorted(metrics)}
        rt = entry.get("ragtune", {})
        for other in ("bm25s", "bm25s_t2", "bm25s_numba", "bm25s_numba_t2", "rank_bm25"):
            if other in entry and rt:
                entry[f"qps_ratio_{other}"] = rt["qps"] / entry[other]["qps"]
                if rt.get("latency_ms") and entry[other].get("latency_ms"):
                    entry[f"latency_ratio_{other}"] = rt["latency_ms"] / entry[other]["latency_ms"]
        idx = entry["index"]
        for other in ("bm25s", "rank_bm25"):
            if other in idx and "ragtune" in idx:
                entry[f"index_time_ratio_{other}"] = idx["ragtune"]["index_s"] / idx[other]["index_s"]
                entry[f"memory_ratio_{other}"] = idx["ragtune"]["peak_mb"] / idx[other]["peak_mb"]
        result["sizes"][str(size)] = entry
    base = result["sizes"].get("5183") or next(iter(result["sizes"].values()))
    result.update({"ndcg10": base.get("ragtune", {}).get("ndcg@10"), "recall100": base.get("ragtune", {}).get("recall@100"),
                   "qps_ratio_bm25s": base.get("qps_ratio_bm25s"), "qps_ratio_bm25s_numba": base.get("qps_ratio_bm25s_numba"),
                   "index_time_ratio_bm25s": base.get("index_time_ratio_bm25s")})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if quiet:
        return
    print(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k not in ("sizes", "runs")}, indent=1))


if __name__ == "__main__":
    main()
