"""Sharded indexes and Ray: exactness, the cost of the fan-out, encoding throughput, memory per shard actor.

    python benchmarks/bench_distributed.py [--replica 100000] [--encode-passages 1024] [--queries 200]

1. SciFact (5,183 docs): bm25, tfidf and dense (MiniLM, flat) indexed once; the same index split into 2 shards
   (``update(shards=2)`` on a copy: the dense vectors are split, not re-encoded). Hits of the single index, the
   2 shards in-process and the 2 shards on Ray actors are compared id for id and score for score; the
   approximate dense indexes (HNSW, IVF-PQ) are split the same way and their recall@10 against flat reported.
2. Latency of one query (p50, p95 over ``--queries`` test queries, one at a time) and batch throughput (all test
   queries in one call): single in-process, 2 shards in-process, 2 shards on Ray. The fan-out overhead is Ray
   minus in-process sharded.
3. A 100k-passage replica (SciFact passages repeated with distinct ids): BM25 through the same three paths, and
   dense flat in-process over SciFact's vectors repeated with a small deterministic perturbation (encoding 100k
   passages on 2 CPU cores would take the whole budget), 1 and 2 shards.
4. Encoding throughput: ``--encode-passages`` SciFact passages by the single-process ``Encoder`` and by Ray pools
   of 1 and 2 workers (vectors checked equal).
5. Peak resident memory of each shard actor (``getrusage``), and the on-disk size of each shard.

Ray runs locally as the tests run it: ``ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 MB)``.
Writes benchmarks/results/distributed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import DATASETS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "distributed.json"


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def latency(retriever, queries, reps_warm=3) -> dict:
    for q in queries[:reps_warm]:
        retriever.search([q], 10)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        retriever.search([q], 10)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3)}


def batch_qps(retriever, queries, reps=3) -> float:
    retriever.search(queries, 10)
    best = min(_timed(lambda: retriever.search(queries, 10)) for _ in range(reps))
    return round(len(queries) / best, 1)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def same(a, b) -> bool:
    return bool(np.array_equal(a.ids, b.ids) and np.array_equal(a.scores, b.scores))


def write_replica(src: Path, out: Path, n_target: int) -> int:
    """SciFact's corpus repeated under distinct ids until ``n_target`` documents."""
    rows = [json.loads(line) for line in (src / "corpus.jsonl").read_text().splitlines()]
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out / "corpus.jsonl", "w") as f:
        rep = 0
        while n < n_target:
            for r in rows:
                if n >= n_target:
                    break
                f.write(json.dumps({**r, "_id": f"{r['_id']}-r{rep}"}) + "\n")
                n += 1
            rep += 1
    shutil.copy(src / "queries.jsonl", out / "queries.jsonl")
    shutil.copytree(src / "qrels", out / "qrels", dirs_exist_ok=True)
    return n


class ByVector:
    """A dense retriever searched with query vectors encoded once beforehand: the latency of the index and the
    fan-out, without the query encoder (~10-250 ms a query on these shared cores) in every figure."""

    def __init__(self, r, vectors: dict):
        self.r, self.vectors = r, vectors

    def search(self, queries, k):
        return self.r.search_vectors(np.stack([self.vectors[q] for q in queries]), k)


def three_paths(single_dir: Path, sharded_dir: Path, kind: str, queries: list[str], address: str, out: dict,
                check: bool = True) -> None:
    from ragtune.distributed.ray_shards import RayShardedRetriever
    from ragtune.retrieval.index import Index

    with Index.open(single_dir) as s, Index.open(sharded_dir) as sh:
        r1, r2 = s.retriever(kind), sh.retriever(kind)
        r3 = RayShardedRetriever.open(sh, kind, address)
        res = {}
        if kind == "dense":
            res["identical_text_query_ray"] = same(r1.search(queries[:20], 10), r3.search(queries[:20], 10))
            vectors = dict(zip(queries, r1.encoder.encode_queries(queries)))
            r1, r2, r3 = ByVector(r1, vectors), ByVector(r2, vectors), ByVector(r3, vectors)
            r3.parts, r3._gather = r3.r.parts, r3.r._gather
        if check:
            want = r1.search(queries, 10)
            res["identical_in_process"] = same(want, r2.search(queries, 10))
            res["identical_ray"] = same(want, r3.search(queries, 10))
            want100 = r1.search(queries, 100)
            res["identical_k100"] = same(want100, r2.search(queries, 100)) and same(want100, r3.search(queries, 100))
        lat_q = queries[: out["n_latency_queries"]]
        res["latency"] = {"single": latency(r1, lat_q), "sharded_in_process": latency(r2, lat_q), "sharded_ray": latency(r3, lat_q)}
        res["batch_qps"] = {"single": batch_qps(r1, queries), "sharded_in_process": batch_qps(r2, queries),
                            "sharded_ray": batch_qps(r3, queries)}
        res["actor_peak_rss_mb"] = [round(v, 1) for v in r3._gather("peak_rss_mb", range(len(r3.parts)), lambda i: ()).values()]
        res["shard_disk_mb"] = [round(dir_mb(sharded_dir / "shards" / f"{i:03d}" / kind), 2) for i in range(len(r3.parts))]
        res["single_disk_mb"] = round(dir_mb(single_dir / kind), 2)
        if kind in ("bm25", "tfidf"):
            segs = s.retriever(kind).segments
            res["postings_per_passage"] = round(sum(len(g.docs) for g in segs) / max(1, sum(g.n_docs for g in segs)), 1)
            res["vocabulary"] = len(s.retriever(kind).terms)
        res["fanout_overhead_ms_p50"] = round(res["latency"]["sharded_ray"]["p50_ms"] - res["latency"]["sharded_in_process"]["p50_ms"], 3)
        print(kind, json.dumps(res), flush=True)
        out[kind] = res


def encoding_throughput(scifact: Path, n: int, work: Path) -> dict:
    """Passages/s of the single-process ``Encoder`` and of 1 and 2 Ray workers (returning their vectors, and
    writing them into a shared file), each result compared with the single-process vectors."""
    from ragtune.distributed.encoding import encode_passages, shutdown_pools
    from ragtune.retrieval.dense import Encoder

    rows = [json.loads(line) for line in (scifact / "corpus.jsonl").read_text().splitlines()][:n]
    texts = [r.get("title", "") + "\n" + r["text"] for r in rows]
    enc = Encoder()
    enc.encode_passages(texts[:64])
    t0 = time.perf_counter()
    want = enc.encode_passages(texts)
    single_s = time.perf_counter() - t0
    encoding = {"passages": len(texts), "single_process_per_s": round(len(texts) / single_s, 1)}
    for w, to_file in ((1, False), (2, False), (2, True)):
        name = f"ray_{w}_workers" + ("_to_file" if to_file else "")
        out = work / f"vectors-{w}.npy" if to_file else None
        encode_passages(enc, texts[:64], "local", workers=w, batches_per_task=1)  # start and warm the pool
        t0 = time.perf_counter()
        got = encode_passages(enc, texts, "local", workers=w, batches_per_task=2, out=out)
        secs = time.perf_counter() - t0
        encoding[f"{name}_per_s"] = round(len(texts) / secs, 1)
        encoding[f"{name}_equal"] = bool(np.array_equal(got, want))
    shutdown_pools()
    for ratio, name in (("1_worker", "ray_1_workers"), ("2_workers", "ray_2_workers"), ("2_workers_to_file", "ray_2_workers_to_file")):
        encoding[f"ratio_{ratio}"] = round(encoding[f"{name}_per_s"] / encoding["single_process_per_s"], 3)
    return encoding


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replica", type=int, default=100_000)
    ap.add_argument("--encode-passages", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--docs", type=int, default=0, help="Use only the first N SciFact documents (a smoke run).")
    ap.add_argument("--only-encoding", action="store_true",
                    help="Measure encoding throughput alone and update it in results/distributed.json.")
    ap.add_argument("--dense-docs", type=int, default=1000,
                    help="The dense index holds the first N SciFact documents (MiniLM encodes ~16 passages/s on 2 "
                         "quiet cores: all 5,183 would take most of the time budget); 0: all.")
    args = ap.parse_args()

    import ray
    import torch

    from ragtune.config import Config
    from ragtune.corpus.beir import load_beir
    from ragtune.retrieval.update import update

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200_000_000, log_to_driver=False, namespace="ragtune")
    scifact = DATASETS / "scifact"
    _, qmap, qrels = load_beir(scifact, split="test")
    queries = [qmap[q] for q in qrels]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    if args.only_encoding:
        path = Path(__file__).resolve().parent / "results" / "distributed.json"
        res = json.loads(path.read_text())
        res["encoding"] = encoding_throughput(scifact, args.encode_passages, work)
        res["encoding"]["command"] = "python benchmarks/bench_distributed.py " + " ".join(sys.argv[1:])
        res["encode_ratio_2_workers"] = res["encoding"]["ratio_2_workers"]
        path.write_text(json.dumps(res, indent=2) + "\n")
        print("encoding", json.dumps(res["encoding"]), flush=True)
        return
    if args.docs:
        small = work / "scifact-small"
        small.mkdir(parents=True, exist_ok=True)
        lines = (scifact / "corpus.jsonl").read_text().splitlines()[: args.docs]
        (small / "corpus.jsonl").write_text("\n".join(lines) + "\n")
        shutil.copy(scifact / "queries.jsonl", small / "queries.jsonl")
        shutil.copytree(scifact / "qrels", small / "qrels", dirs_exist_ok=True)
        scifact = small
    out: dict = {"command": "python benchmarks/bench_distributed.py " + " ".join(sys.argv[1:]),
                 "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU shared with other engineers, "
                            f"{torch.get_num_threads()} torch threads in the driver",
                 "ray": f"ray {ray.__version__}, local: num_cpus=2, no dashboard, object store 200 MB",
                 "test_queries": len(queries), "n_latency_queries": args.queries}
    t_all = time.perf_counter()

    # 1-2. SciFact: bm25, tfidf, dense flat
    single, sharded = work / "scifact-1", work / "scifact-2"
    t0 = time.perf_counter()
    update(single, beir=[scifact], retrievers=["bm25", "tfidf"], config=Config())
    out["scifact_sparse_index_seconds"] = round(time.perf_counter() - t0, 1)
    shutil.copytree(single, sharded)
    update(sharded, beir=[scifact], config=Config(), shards=2)  # split
    sf: dict = {"passages": json.loads((single / "manifest.json").read_text())["counts"]["passages"],
                "n_latency_queries": args.queries}
    for kind in ("bm25", "tfidf"):
        three_paths(single, sharded, kind, queries, "local", sf)
    dense_src = scifact
    if args.dense_docs:
        dense_src = work / "scifact-dense"
        dense_src.mkdir(parents=True, exist_ok=True)
        lines = (scifact / "corpus.jsonl").read_text().splitlines()[: args.dense_docs]
        (dense_src / "corpus.jsonl").write_text("\n".join(lines) + "\n")
        shutil.copy(scifact / "queries.jsonl", dense_src / "queries.jsonl")
        shutil.copytree(scifact / "qrels", dense_src / "qrels", dirs_exist_ok=True)
    single, sharded = work / "scifact-dense-1", work / "scifact-dense-2"
    t0 = time.perf_counter()
    update(single, beir=[dense_src], retrievers=["dense"], config=Config())
    sf["dense_passages"] = json.loads((single / "manifest.json").read_text())["counts"]["passages"]
    sf["dense_index_seconds"] = round(time.perf_counter() - t0, 1)
    shutil.copytree(single, sharded)
    update(sharded, beir=[dense_src], config=Config(), shards=2)  # split, no re-encoding
    three_paths(single, sharded, "dense", queries, "local", sf)
    out["scifact"] = sf

    # approximate indexes: split the flat vectors into HNSW / IVF-PQ shards, recall@10 against flat
    from ragtune.distributed.shards import ShardedRetriever, split_retriever
    from ragtune.retrieval.dense import DenseRetriever
    from ragtune.retrieval.dense.vector_index import VectorIndex
    from ragtune.retrieval.index import Index

    with Index.open(single) as s:
        flat = s.retriever("dense")
        qv = flat.encoder.encode_queries(queries)
        exact = flat.search_vectors(qv, 10).ids
        ids = flat.index.ids()
        vecs = flat.index.reconstruct(ids)
        approx = {}
        for kind in ("hnsw",):  # IVF-PQ needs >= 9,984 training vectors a shard: measured on the replica below
            whole = DenseRetriever(flat.cfg.model_copy(update={"index": kind}), flat.encoder)
            whole.index = VectorIndex(flat.index.dim, kind)
            whole.index.add(ids, vecs)
            row = {}
            for n in (1, 2):
                r = whole if n == 1 else ShardedRetriever("dense", split_retriever(whole, 2), [0, 0], flat.encoder)
                if n == 2:
                    r.sizes = [len(p) for p in r.parts]
                got = r.search_vectors(qv, 10).ids
                row[f"recall@10_vs_flat_{n}_shard"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact)])), 4)
            approx[kind] = row
        out["scifact"]["dense_approximate"] = approx
        print("approx", json.dumps(approx), flush=True)

    # 4. encoding throughput
    encoding = encoding_throughput(scifact, args.encode_passages, work)
    out["encoding"] = encoding
    print("encoding", json.dumps(encoding), flush=True)

    # 3. the 100k replica
    rep_dir = work / "replica"
    n_rep = write_replica(scifact, rep_dir, args.replica)
    r1, r2 = work / "rep-1", work / "rep-2"
    t0 = time.perf_counter()
    update(r1, beir=[rep_dir], retrievers=["bm25"], config=Config())
    rep: dict = {"passages": n_rep, "bm25_index_seconds": round(time.perf_counter() - t0, 1), "n_latency_queries": args.queries}
    shutil.copytree(r1, r2)
    t0 = time.perf_counter()
    update(r2, beir=[rep_dir], config=Config(), shards=2)
    rep["bm25_reshard_seconds"] = round(time.perf_counter() - t0, 1)
    three_paths(r1, r2, "bm25", queries, "local", rep)
    # dense flat over replicated vectors, in-process (1 vs 2 shards)
    rng = np.random.default_rng(0)
    reps = -(-n_rep // len(ids))
    big_ids = np.arange(n_rep, dtype=np.int64)
    big = np.tile(vecs, (reps, 1))[:n_rep] + rng.normal(0, 1e-3, (n_rep, vecs.shape[1])).astype(np.float32)
    whole = DenseRetriever(flat.cfg, flat.encoder)
    whole.index = VectorIndex(vecs.shape[1], "flat")
    whole.index.add(big_ids, big)
    parts = split_retriever(whole, 2)
    sh = ShardedRetriever("dense", parts, [len(p) for p in parts], flat.encoder)
    lat_q = qv[: args.queries]

    def vec_latency(r) -> float:
        ts = []
        for q in lat_q:
            t0 = time.perf_counter()
            r.search_vectors(q[None], 10)
            ts.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(ts), 3)

    # IVF-PQ over the replica with a larger perturbation, so copies are distinct
    noisy = np.tile(vecs, (reps, 1))[:n_rep] + rng.normal(0, 0.02, (n_rep, vecs.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    flat_big = VectorIndex(vecs.shape[1], "flat")
    flat_big.add(big_ids, noisy)
    truth = flat_big.search(qv, 10)[1]
    ivf_kind = "IVF256,PQ32"  # 32 bytes a vector; ragtune's automatic "ivfpq" (PQ64) trains ~2x longer
    ivf = DenseRetriever(flat.cfg.model_copy(update={"index": ivf_kind}), flat.encoder)
    ivf.index = VectorIndex(vecs.shape[1], ivf_kind)
    t0 = time.perf_counter()
    ivf.index.add(big_ids, noisy)
    ivf_build = time.perf_counter() - t0
    ivf_parts = split_retriever(ivf, 2)
    ivf_sh = ShardedRetriever("dense", ivf_parts, [len(p) for p in ivf_parts], flat.encoder)

    def recall(got) -> float:
        return round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])), 4)

    rep["dense_ivfpq_recall@10_vs_flat"] = {"factory_1_shard": ivf.index.factory, "factory_2_shards": ivf_parts[0].index.factory,
                                            "1_shard": recall(ivf.search_vectors(qv, 10).ids),
                                            "2_shards": recall(ivf_sh.search_vectors(qv, 10).ids),
                                            "build_seconds_1_shard": round(ivf_build, 1)}
    rep["dense_flat_in_process"] = {
        "identical": bool(np.array_equal(whole.search_vectors(qv, 10).ids, sh.search_vectors(qv, 10).ids)),
        "vector_p50_ms_single": vec_latency(whole), "vector_p50_ms_2_shards": vec_latency(sh),
        "batch_qps_single": round(len(qv) / min(_timed(lambda: whole.search_vectors(qv, 10)) for _ in range(3)), 1),
        "batch_qps_2_shards": round(len(qv) / min(_timed(lambda: sh.search_vectors(qv, 10)) for _ in range(3)), 1),
        "bytes_per_vector": int(vecs.shape[1] * 4),
    }
    out["replica_100k"] = rep
    print("replica", json.dumps(rep), flush=True)

    checks = [sf[k]["identical_in_process"] and sf[k]["identical_ray"] and sf[k]["identical_k100"] for k in ("bm25", "tfidf", "dense")]
    checks += [rep["bm25"]["identical_in_process"], rep["bm25"]["identical_ray"], rep["dense_flat_in_process"]["identical"]]
    out["identical_hits"] = all(checks)
    out["fanout_overhead_ms_p50"] = sf["bm25"]["fanout_overhead_ms_p50"]
    out["encode_ratio_2_workers"] = encoding["ratio_2_workers"]
    out["seconds"] = round(time.perf_counter() - t_all, 1)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("identical_hits", "fanout_overhead_ms_p50", "encode_ratio_2_workers", "seconds")}))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
