"""Open-book QA on SQuAD v1.1 dev with the packaged SmolLM2-135M-Instruct: EM/F1 and speed per setting.

Knowledge base: all 2,067 dev paragraphs (one passage each, title = article title). Test questions: a fixed
sample (seed 0) of the questions of articles 36-47; the sampled ids are saved so later benchmarks reuse them.
Settings: closed book, gold paragraph, BM25 top-1 and top-3 in each RAG mode; greedy decoding throughout.
Also: generation throughput of ``Generator.generate`` against a plain ``transformers`` ``generate()`` on the
same model and prompts (generate_overhead = ragtune time / plain time).

    .venv/bin/python benchmarks/bench_qa.py [--n 200] [--max-new-tokens 24]

A long run can be split: ``--start 50 --merge results/qa.json`` evaluates questions 50..n-1 of the same sample
and folds in the stored results of questions 0..49 (every field a mean over questions, weighted by count).
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ragtune.evaluation.qa import evaluate_qa
from ragtune.generation import Generator
from ragtune.rag.model import RAG
from ragtune.retrieval.base import Hits
from ragtune.retrieval.sparse import BM25Retriever
from shared_data import MemoryStore, squad_open_book  # benchmarks/shared_data.py: ../shared/datasets

OUT = Path(__file__).parent / "results" / "qa.json"


class GoldRetriever:
    """The question's own paragraph as the single hit: the reader's ceiling with perfect retrieval."""

    def __init__(self, gold: dict[str, int]):
        self.gold = gold

    def search(self, queries, k):
        ids = np.array([[self.gold[q]] for q in queries], dtype=np.int64)
        return Hits(ids, np.zeros_like(ids, dtype=np.float32))


class NoRetriever:
    """No passages: RAG answers closed book."""

    def search(self, queries, k):
        return Hits.empty(len(queries), 1)


def sample_questions(test, n_sample: int, seed: int = 0):
    rng = random.Random(seed)
    return rng.sample(test, n_sample)


def overhead(gen: Generator, prompts: list[str], max_new_tokens: int, reps: int = 2) -> dict:
    """Wall time of Generator.generate vs a bare model.generate on the same rendered prompts (greedy, batch 1)."""
    tok, model = gen.tokenizer, gen.model

    def plain(p: str) -> int:
        enc = tok(gen.render(p), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=gen.pad_token_id)
        tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return out.shape[1] - enc["input_ids"].shape[1]

    def ours(p: str) -> int:
        return len(gen.generate([p], max_new_tokens=max_new_tokens)[0].token_ids)

    plain(prompts[0]), ours(prompts[0])  # warm-up
    t = {"plain": 0.0, "ragtune": 0.0}
    toks = {"plain": 0, "ragtune": 0}
    for _ in range(reps):
        for p in prompts:  # interleaved so load from other processes hits both alike
            for name, fn in (("plain", plain), ("ragtune", ours)):
                s = time.perf_counter()
                toks[name] += fn(p)
                t[name] += time.perf_counter() - s
    return {"prompts": len(prompts), "reps": reps, "plain_seconds": t["plain"], "ragtune_seconds": t["ragtune"],
            "plain_tokens_per_s": toks["plain"] / t["plain"], "ragtune_tokens_per_s": toks["ragtune"] / t["ragtune"],
            "tokens_plain": toks["plain"], "tokens_ragtune": toks["ragtune"], "generate_overhead": t["ragtune"] / t["plain"]}


MEANS = ("em", "f1", "hit_rate", "answer_recall", "seconds_per_question", "retrieval_seconds_per_question",
         "generation_seconds_per_question")


def merge_setting(a: dict, b: dict) -> dict:
    """One setting's report over a's questions followed by b's: each per-question mean weighted by its count."""
    n = a["n"] + b["n"]
    out = dict(b, n=n, wall_seconds=a["wall_seconds"] + b["wall_seconds"])
    for key in MEANS:
        if a.get(key) is not None and b.get(key) is not None:
            out[key] = (a[key] * a["n"] + b[key] * b["n"]) / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--settings", default="closed,gold,bm25-1-concat,bm25-1-rag-sequence,bm25-1-rag-token,bm25-3-concat,bm25-3-rag-sequence,bm25-3-rag-token")
    ap.add_argument("--overhead-prompts", type=int, default=10)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="evaluate sample[start:n]")
    ap.add_argument("--merge", type=Path, help="results of sample[0:start] to fold in")
    args = ap.parse_args()
    earlier = json.loads(args.merge.read_text()) if args.merge else None
    if earlier is not None and earlier["n"] != args.start:
        sys.exit(f"--merge holds {earlier['n']} questions but --start is {args.start}")
    # One thread: on a shared 2-core machine two spinning OpenMP threads per process thrash (measured 4x slower).
    torch.set_num_threads(args.threads)

    split, passages, pid_of = squad_open_book()
    sample_all = sample_questions(split.test, 200)
    sample = sample_all[args.start: args.n]  # a quick run evaluates a prefix of the same fixed sample
    examples = sample
    print(f"kb={len(passages)} paragraphs, test={len(split.test)} questions, sample={len(examples)}", file=sys.stderr, flush=True)

    t = time.perf_counter()
    bm25 = BM25Retriever()
    bm25.add(passages)
    index_seconds = time.perf_counter() - t
    store = MemoryStore(passages)
    gen = Generator("smollm2-135m-instruct", max_new_tokens=args.max_new_tokens, decoding="greedy")
    gold = GoldRetriever({q.question: pid_of[q.positive_doc_ids[0]] for q in sample})

    results: dict = {"command": "python benchmarks/bench_qa.py " + " ".join(sys.argv[1:]), "n": len(examples),
                     "sample_seed": 0, "sample_ids": [q.id for q in sample_all],
                     "evaluated": f"sample_ids[{args.start}:{args.start + len(sample)}]", "max_new_tokens": args.max_new_tokens,
                     "batch_size": args.batch_size, "decoding": "greedy", "model": "smollm2-135m-instruct (GGUF Q4_1 -> fp32)",
                     "bm25_index_seconds": index_seconds, "machine": f"{platform.machine()} {torch.get_num_threads()} threads, shared",
                     "settings": {}}
    if earlier is not None:
        results.update(n=args.start + len(examples), evaluated=f"sample_ids[0:{args.start + len(examples)}]",
                       merged_from={"command": earlier["command"], "n": earlier["n"], "machine": earlier["machine"]})
    for name in args.settings.split(","):
        if name == "closed":
            rag, mode, k = RAG(NoRetriever(), gen, store, k=1), "concat", 1
        elif name == "gold":
            rag, mode, k = RAG(gold, gen, store, k=1), "concat", 1
        else:
            _, kk, mode = name.split("-", 2)
            rag, k = RAG(bm25, gen, store, k=int(kk)), int(kk)
        t = time.perf_counter()
        rep = evaluate_qa(rag, examples, mode=mode, k=k, batch_size=args.batch_size)
        wall = time.perf_counter() - t
        d = rep.to_dict()
        d["wall_seconds"] = wall
        if earlier is not None:
            d = merge_setting(earlier["settings"][name], d)
        results["settings"][name] = d
        print(f"{name:22s} em={d['em']:.3f} f1={d['f1']:.3f} hit={d['hit_rate']} s/q={d['seconds_per_question']:.3f} "
              f"(ret {d['retrieval_seconds_per_question']:.4f}, gen {d['generation_seconds_per_question']:.3f}) n={d['n']}",
              file=sys.stderr, flush=True)
        results["examples"] = results.get("examples", {}) | {name: rep.predictions[:5]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))

    prompts = [gen.build_prompt(e.question, [store.get([gold.gold[e.question]])[0]]) for e in examples[: args.overhead_prompts]]
    results["generation_speed"] = overhead(gen, prompts, args.max_new_tokens)
    results["generate_overhead"] = results["generation_speed"]["generate_overhead"]
    print(json.dumps(results["generation_speed"]), file=sys.stderr, flush=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
