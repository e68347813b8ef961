"""Dense, BM25 and hybrid retrieval on BEIR SciFact; encoder throughput against sentence-transformers; FAISS speed.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dense.py            # full run, writes results
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dense.py --quick    # smoke test on 300 docs, no files

Passage vectors are cached in benchmarks/.work/ (keyed by model, settings and corpus), so only the first run
pays the few minutes of encoding. Nothing is tuned on the test queries: RRF uses the standard k=60, and the
weighted-fusion weight is chosen on SciFact's *train* qrels.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from ragtune.corpus.types import Passage  # noqa: E402
from ragtune.evaluation.metrics import dedupe_ranked, retrieval_scores  # noqa: E402
from ragtune.retrieval.base import EMPTY_ID, Hits  # noqa: E402
from ragtune.retrieval.dense import DenseRetriever, Encoder, VectorIndex  # noqa: E402
from ragtune.retrieval.hybrid import rrf, weighted_fusion  # noqa: E402
from shared_data import DATASETS  # benchmarks/shared_data.py: ../shared/datasets

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
DATA = Path(os.environ.get("SCIFACT") or DATASETS / "scifact")
DEPTH = 100


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path) as f:
        next(f)  # header
        for line in f:
            q, d, s = line.rstrip("\n").split("\t")
            qrels.setdefault(q, {})[d] = int(s)
    return qrels


def run_of(hits: Hits, qids: list[str], doc_of: np.ndarray) -> dict[str, list[str]]:
    return {q: dedupe_ranked(doc_of[i] for i in row if i != EMPTY_ID) for q, row in zip(qids, hits.ids)}


def bm25_hits(passages: list[Passage], queries: list[str]) -> tuple[Hits, str]:
    try:
        from ragtune.retrieval.sparse import BM25Retriever
    except ImportError:
        BM25Retriever = None  # type: ignore[assignment]
    if BM25Retriever is not None:
        r = BM25Retriever()
        r.add(passages)
        return r.search(queries, DEPTH), "ragtune.retrieval.sparse.BM25Retriever (lucene, k1=1.2, b=0.75, English stemming + stopwords)"
    import bm25s  # fallback while ragtune's BM25 did not exist

    import Stemmer

    stem = Stemmer.Stemmer("english")
    model = bm25s.BM25()
    model.index(bm25s.tokenize([p.indexed_text for p in passages], stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    docs, scores = model.retrieve(bm25s.tokenize(queries, stopwords="en", stemmer=stem, show_progress=False), k=DEPTH, show_progress=False)
    return Hits(docs.astype(np.int64), scores.astype(np.float32)), "bm25s fallback (ragtune BM25Retriever missing)"


def cached_passage_vectors(enc: Encoder, passages: list[Passage], use_cache: bool) -> tuple[np.ndarray, float | None]:
    key = hashlib.sha1(json.dumps([enc.to_dict(), [p.indexed_text for p in passages]]).encode()).hexdigest()[:16]
    path = WORK / f"scifact-vectors-{key}.npy"
    if use_cache and path.exists():
        return np.load(path), None
    t = time.perf_counter()
    vecs = enc.encode_passages([p.indexed_text for p in passages], progress=True)
    elapsed = time.perf_counter() - t
    if use_cache:
        WORK.mkdir(parents=True, exist_ok=True)
        np.save(path, vecs)
    return vecs, elapsed


def throughput(texts: list[str], batch_size: int, max_length: int, rounds: int) -> dict:
    """ragtune Encoder vs SentenceTransformer.encode on the same model, texts, batch size and max length."""
    import torch
    from sentence_transformers import SentenceTransformer

    from ragtune.models.registry import resolve

    path = resolve("minilm")
    ours = Encoder("minilm", batch_size=batch_size, max_length=max_length)
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = max_length
    ours.encode_passages(texts[:batch_size])  # warm-up: load, allocate, first-call overheads
    st.encode(texts[:batch_size], batch_size=batch_size)
    times: dict[str, list[float]] = {"ragtune": [], "sentence_transformers": []}
    for r in range(rounds):  # interleaved, alternating who goes first, so load from other processes hits both
        order = ["ragtune", "sentence_transformers"] if r % 2 == 0 else ["sentence_transformers", "ragtune"]
        for name in order:
            t = time.perf_counter()
            if name == "ragtune":
                a = ours.encode_passages(texts)
            else:
                b = st.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
            times[name].append(time.perf_counter() - t)
    agree = float(np.min(np.sum(a * b, axis=1)))  # cosine between the two implementations' vectors
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "texts": len(texts), "batch_size": batch_size, "max_length": max_length, "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "seconds": times,
        "passages_per_s_ragtune": len(texts) / med["ragtune"],
        "passages_per_s_sentence_transformers": len(texts) / med["sentence_transformers"],
        "encode_ratio_st": med["sentence_transformers"] / med["ragtune"],
        "min_cosine_between_implementations": agree,
    }


def faiss_speed(pvecs: np.ndarray, qvecs: np.ndarray, k: int = 10, repeat: int = 5) -> dict:
    ids = np.arange(len(pvecs), dtype=np.int64)
    out: dict = {}
    results = {}
    for kind in ("flat", "hnsw"):
        index = VectorIndex(pvecs.shape[1], kind)
        t = time.perf_counter()
        index.add(ids, pvecs)
        build = time.perf_counter() - t
        index.search(qvecs[:10], k)
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            _, got = index.search(qvecs, k)
            runs.append(time.perf_counter() - t)
        results[kind] = got
        out[kind] = {"build_s": build, "queries_per_s": len(qvecs) / statistics.median(runs), "factory": index.factory}
    out["hnsw"]["recall_at_10_vs_flat"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(results["flat"], results["hnsw"])]))
    out["queries"], out["passages"], out["k"] = len(qvecs), len(pvecs), k
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 documents, 1 round, no cache, no result files")
    ap.add_argument("--throughput-docs", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()

    corpus = read_jsonl(DATA / "corpus.jsonl")
    if args.quick:
        corpus = corpus[:300]
    passages = [Passage(id=i, doc_id=d["_id"], text=d["text"], title=d.get("title", "")) for i, d in enumerate(corpus)]
    doc_of = np.array([p.doc_id for p in passages], dtype=object)
    queries = {q["_id"]: q["text"] for q in read_jsonl(DATA / "queries.jsonl")}
    splits = {s: read_qrels(DATA / "qrels" / f"{s}.tsv") for s in ("test", "train")}
    qids = {s: [q for q in qrels if q in queries] for s, qrels in splits.items()}

    # BM25
    runs: dict[str, dict[str, Hits]] = {"bm25": {}, "dense": {}}
    t = time.perf_counter()
    for s in splits:
        runs["bm25"][s], bm25_impl = bm25_hits(passages, [queries[q] for q in qids[s]])
    print(f"bm25: {bm25_impl} ({time.perf_counter() - t:.1f}s)", flush=True)

    # Dense (MiniLM): the retriever takes cached vectors; queries are encoded through the normal path.
    dense = DenseRetriever()
    pvecs, enc_s = cached_passage_vectors(dense.encoder, passages, use_cache=not args.quick)
    print(f"dense: {len(pvecs)} passage vectors " + ("from cache" if enc_s is None else f"encoded in {enc_s:.0f}s"), flush=True)
    dense.add_vectors(np.arange(len(passages)), pvecs)
    qvecs = {s: dense.encoder.encode_queries([queries[q] for q in qids[s]]) for s in splits}
    for s in splits:
        runs["dense"][s] = dense.search_vectors(qvecs[s], DEPTH)

    # Hybrid: RRF with the standard k=60; weighted fusion with a dense weight chosen on train.
    fused = {"hybrid_rrf": {s: rrf([runs["bm25"][s], runs["dense"][s]], DEPTH, rrf_k=60) for s in splits}}
    grid = [round(w, 2) for w in np.arange(0.0, 1.01, 0.05)]
    train_ndcg = {
        w: retrieval_scores(run_of(weighted_fusion([runs["bm25"]["train"], runs["dense"]["train"]], DEPTH, weights=[1 - w, w]), qids["train"], doc_of), splits["train"])["ndcg@10"]
        for w in grid
    }
    w_dense = max(train_ndcg, key=lambda w: (train_ndcg[w], -abs(w - 0.5)))
    fused["hybrid_weighted"] = {s: weighted_fusion([runs["bm25"][s], runs["dense"][s]], DEPTH, weights=[1 - w_dense, w_dense]) for s in splits}
    runs.update(fused)

    metrics = {name: {s: retrieval_scores(run_of(h[s], qids[s], doc_of), splits[s]) for s in splits} for name, h in runs.items()}
    for name, m in metrics.items():
        print(f"{name:16s} test nDCG@10 {m['test']['ndcg@10']:.4f}  R@100 {m['test']['recall@100']:.4f}   (train nDCG@10 {m['train']['ndcg@10']:.4f})")
    print(f"weighted fusion: dense weight {w_dense} chosen on train (train nDCG@10 {train_ndcg[w_dense]:.4f})")

    fs = faiss_speed(pvecs, np.concatenate([qvecs["test"], qvecs["train"]]))
    print(f"faiss: flat {fs['flat']['queries_per_s']:.0f} q/s, hnsw {fs['hnsw']['queries_per_s']:.0f} q/s, hnsw recall@10 vs flat {fs['hnsw']['recall_at_10_vs_flat']:.4f}")

    tp = None
    if not args.skip_throughput:
        rng = np.random.default_rng(0)
        sample = [passages[i].indexed_text for i in rng.choice(len(passages), min(args.throughput_docs, len(passages)), replace=False)]
        tp = throughput(sample, args.batch_size, args.max_length, 1 if args.quick else args.rounds)
        print(f"encode: ragtune {tp['passages_per_s_ragtune']:.1f} p/s, sentence-transformers {tp['passages_per_s_sentence_transformers']:.1f} p/s, ratio {tp['encode_ratio_st']:.3f}")

    if args.quick:
        return
    test = {name: m["test"] for name, m in metrics.items()}
    best_hybrid = "hybrid_rrf" if test["hybrid_rrf"]["ndcg@10"] > max(test["bm25"]["ndcg@10"], test["dense"]["ndcg@10"]) else "hybrid_weighted"
    result = {
        "dataset": "BEIR SciFact (5183 docs, 300 test queries; train qrels for the fusion weight)",
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dense.py",
        "encoder": dense.encoder.to_dict(),
        "bm25_implementation": bm25_impl,
        "ndcg10_bm25": test["bm25"]["ndcg@10"],
        "ndcg10_dense": test["dense"]["ndcg@10"],
        "ndcg10_hybrid": test[best_hybrid]["ndcg@10"],
        "hybrid_method": best_hybrid,
        "ndcg10_hybrid_rrf": test["hybrid_rrf"]["ndcg@10"],
        "ndcg10_hybrid_weighted": test["hybrid_weighted"]["ndcg@10"],
        "recall100_bm25": test["bm25"]["recall@100"],
        "recall100_dense": test["dense"]["recall@100"],
        "recall100_hybrid": test[best_hybrid]["recall@100"],
        "weighted_dense_weight_from_train": w_dense,
        "metrics": metrics,
        "corpus_encode_seconds": enc_s,
        "faiss": fs,
        "throughput": tp,
        "encode_ratio_st": None if tp is None else tp["encode_ratio_st"],
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "dense.json").write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", HERE / "results" / "dense.json")


if __name__ == "__main__":
    sys.exit(main())
