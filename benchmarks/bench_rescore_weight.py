"""The ``rescore`` retriever's sparse weight: BM25's top candidates re-ranked by MiniLM cosine + w * BM25.

For each w, recall@1 and recall@2 of the re-ranked list (k = 2 is the fine-tuning benchmarks' k), on training
questions (where a default may be chosen) and test questions (where it is only reported), on two corpora:
SQuAD v1.1 dev paragraphs (the open-book split of bench_finetune.py: 1,000 seed-0 training questions, the 200 test
questions) and SciFact (BEIR train and test qrels; a hit is any relevant document). w = 0 is MiniLM alone over
BM25's candidates; BM25 alone is its own row. The packaged MiniLM, no training.

    .venv/bin/python benchmarks/bench_rescore_weight.py     # -> results/rescore_weight.json
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

from ragtune.corpus.types import Passage
from ragtune.retrieval.base import Hits
from ragtune.retrieval.dense import DenseRetriever
from ragtune.retrieval.rescore import rescore
from ragtune.retrieval.sparse import BM25Retriever

HERE = Path(__file__).parent
OUT = HERE / "results" / "rescore_weight.json"
WEIGHTS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
DEPTH = 20


def recalls(hits: Hits, relevant: list[set[int]]) -> dict[str, float]:
    return {f"recall@{k}": float(np.mean([bool(rel & set(row[:k].tolist())) for row, rel in zip(hits.ids, relevant)]))
            for k in (1, 2)}


def sweep(bm25: BM25Retriever, dense: DenseRetriever, questions: list[str], relevant: list[set[int]]) -> dict:
    cand = bm25.search(questions, DEPTH)
    qvecs = dense.encoder.encode_queries(questions)
    vecs = dense.passage_vectors(cand.ids)
    out = {"n": len(questions), "bm25": recalls(cand, relevant),
           "bm25_recall@20": float(np.mean([bool(rel & set(r.tolist())) for r, rel in zip(cand.ids, relevant)]))}
    out["by_weight"] = {str(w): recalls(rescore(cand, qvecs, vecs, 2, w), relevant) for w in WEIGHTS}
    return out


def squad() -> dict:
    from bench_finetune import dense_retriever, test_sample
    from shared_data import squad_open_book

    split, passages, pid_of = squad_open_book()
    bm25 = BM25Retriever()
    bm25.add(passages)
    dense = dense_retriever(passages)
    sets = {"train_1000": random.Random(0).sample(split.train, 1000), "test_200": test_sample(split.test)[0]}
    return {name: sweep(bm25, dense, [q.question for q in qs], [{pid_of[q.positive_doc_ids[0]]} for q in qs])
            for name, qs in sets.items()}


def scifact() -> dict:
    from bench_dense import DATA, cached_passage_vectors, read_jsonl, read_qrels
    from ragtune.config import DenseConfig

    passages = [Passage(id=i, doc_id=d["_id"], text=d["text"], title=d.get("title", ""))
                for i, d in enumerate(read_jsonl(DATA / "corpus.jsonl"))]
    pid_of = {p.doc_id: p.id for p in passages}
    queries = {q["_id"]: q["text"] for q in read_jsonl(DATA / "queries.jsonl")}
    bm25 = BM25Retriever()
    bm25.add(passages)
    dense = DenseRetriever(DenseConfig(encoder="minilm"))
    vecs, _ = cached_passage_vectors(dense.encoder, passages, use_cache=True)
    dense.add_vectors([p.id for p in passages], vecs)
    out = {}
    for split in ("train", "test"):
        qrels = {q: r for q, r in read_qrels(DATA / "qrels" / f"{split}.tsv").items() if q in queries}
        qids = sorted(qrels)
        rel = [{pid_of[d] for d, s in qrels[q].items() if s > 0 and d in pid_of} for q in qids]
        out[split] = sweep(bm25, dense, [queries[q] for q in qids], rel)
    return out


def best(by_weight: dict) -> str:
    return max(by_weight, key=lambda w: (by_weight[w]["recall@1"], by_weight[w]["recall@2"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict = {"command": "python benchmarks/bench_rescore_weight.py " + " ".join(sys.argv[1:]),
                 "machine": platform.machine(), "candidates": f"BM25 top {DEPTH}", "encoder": "minilm (packaged)",
                 "weights": list(WEIGHTS), "squad": squad(), "scifact": scifact()}
    res["best_weight"] = {f"{corpus}/{split}": best(r["by_weight"]) for corpus in ("squad", "scifact")
                          for split, r in res[corpus].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    for corpus in ("squad", "scifact"):
        for split, r in res[corpus].items():
            row = "  ".join(f"w={w}: {v['recall@1']:.3f}" for w, v in r["by_weight"].items())
            print(f"{corpus}/{split} (n={r['n']}) BM25 r@1 {r['bm25']['recall@1']:.3f} | {row}")
    print("best weight by recall@1:", res["best_weight"])


if __name__ == "__main__":
    main()
