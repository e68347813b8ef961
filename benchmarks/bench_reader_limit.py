"""What bounds EM after the 60-minute fine-tuning run (bench_finetune.py): the retriever or the reader?

The model that run kept (benchmarks/.work/finetune_out) answers the same 200 SQuAD test questions. For each
question the top ``--k-max`` passages are retrieved once, the generator decodes greedily under each passage alone
(RAG-Sequence's candidates), and every distinct candidate is scored under every passage, log P(y | q, z). From
those, with no further model calls, RAG-Sequence's answer for any k <= k-max and any prior temperature:
argmax_y sum_{z<k} softmax(f(q,z)/T)_z P(y|q,z), and two bounds:

* ``hit``: the gold paragraph is among the first k passages (the retriever's bound);
* ``oracle_em``: some candidate of the first k passages is an exact match (the best any reranking of the
  candidates could do: a bound on what the choice of k and T can reach without a better reader).

k=2, T=1 is the run's own setting: its EM here must equal the run's own (``--run``: that run's results file, whose
model ``--model`` holds); the script fails when it does not.

    python benchmarks/bench_reader_limit.py --shards 2     # two processes, one thread each, then the grid
    python benchmarks/bench_reader_limit.py --grid-only    # the grid again from the kept candidates
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from shared_data import update_results  # noqa: E402

WORK = HERE / ".work"
CANDIDATES = WORK / "reader_limit"
OUT = HERE / "results" / "train_lean.json"
TEMPERATURES = (1.0, 0.1, 0.05, 0.02, 0.01)


def candidates(lo: int, hi: int, k_max: int, model: Path, out: Path) -> None:
    """Questions lo..hi of the test sample: passages, prior scores, candidates and the (k_max, candidates) scores."""
    import torch

    from bench_finetune import dense_retriever, squad_open_book, test_sample
    from ragtune.generation import Generator
    from ragtune.rag.model import RAG
    from ragtune.rag.trained import apply_trained_retriever
    from shared_data import MemoryStore

    torch.set_num_threads(1)
    split, passages, pid_of = squad_open_book()
    sample = test_sample(split.test)[0][lo:hi]
    retriever, store = dense_retriever(passages), MemoryStore(passages)
    gen = Generator.load(model / "generator", max_new_tokens=12)
    apply_trained_retriever(retriever, model)
    gen.model.eval()
    retriever.encoder.model.eval()
    rag = RAG(retriever, gen, store, mode="rag-sequence", k=k_max)
    rows: list[dict] = []
    for i in range(0, len(sample), 4):
        qs = sample[i:i + 4]
        hits = rag.retrieve([q.question for q in qs], k_max)
        prompts = [rag._single_prompts(q.question, r) for q, r in zip(qs, hits.passages(store))]
        with torch.inference_mode():
            gens = gen.generate([p for row in prompts for p in row])
            for b, q in enumerate(qs):
                cands = [g.text for g in gens[b * k_max:(b + 1) * k_max]]
                uniq = list(dict.fromkeys(cands))
                rows.append({"id": q.id, "gold": q.answers, "gold_pid": pid_of[q.positive_doc_ids[0]],
                             "pids": hits.ids[b].tolist(), "scores": hits.scores[b].tolist(), "cands": cands,
                             "uniq": uniq, "seq": gen.sequence_logprobs(prompts[b], [uniq] * k_max)})
        print(f"[{time.strftime('%H:%M:%S')}] {lo + i + len(qs)}/{hi}", file=sys.stderr, flush=True)
        out.write_text(json.dumps(rows))


def choose(row: dict, k: int, temperature: float) -> str:
    """RAG-Sequence's answer from the first k passages: the candidate with the largest marginal."""
    s = np.array(row["scores"][:k]) / temperature
    prior = s - np.logaddexp.reduce(s)
    best, best_m = "", -np.inf
    for c in dict.fromkeys(row["cands"][:k]):
        u = row["uniq"].index(c)
        m = np.logaddexp.reduce([prior[z] + row["seq"][z][u] for z in range(k)])
        if m > best_m:
            best, best_m = c, m
    return best


def grid(rows: list[dict], k_max: int) -> dict:
    from ragtune.evaluation.metrics import exact_match, f1_score

    out = {}
    for k in range(1, k_max + 1):
        cell: dict = {"hit": float(np.mean([r["gold_pid"] in r["pids"][:k] for r in rows])),
                "oracle_em": 100 * float(np.mean([max(exact_match(c, r["gold"]) for c in r["cands"][:k]) for r in rows]))}
        for t in TEMPERATURES:
            picks = [choose(r, k, t) for r in rows]
            cell[f"T={t}"] = {"em": 100 * float(np.mean([exact_match(p, r["gold"]) for p, r in zip(picks, rows)])),
                              "f1": 100 * float(np.mean([f1_score(p, r["gold"]) for p, r in zip(picks, rows)]))}
        out[f"k={k}"] = cell
    first = [r for r in rows if r["pids"][0] == r["gold_pid"]]  # the reader handed the gold paragraph
    out["gold_first"] = {"n": len(first), "em": 100 * float(np.mean([exact_match(r["cands"][0], r["gold"]) for r in first]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k-max", type=int, default=5)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--shards", type=int, default=2, help="processes (one thread each) decoding parts of the sample")
    ap.add_argument("--shard", type=int, nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--grid-only", action="store_true", help="recompute the grid from the candidates kept in .work")
    ap.add_argument("--run", type=Path, default=HERE / "results" / "finetune_lean60.json",
                    help="the results file of the bench_finetune.py run that trained --model")
    ap.add_argument("--model", type=Path, default=WORK / "finetune_out", help="that run's output directory")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.shard:
        lo, hi = args.shard
        return candidates(lo, hi, args.k_max, args.model, CANDIDATES / f"{lo}-{hi}.json")
    if not args.grid_only:
        shutil.rmtree(CANDIDATES, ignore_errors=True)  # a run with other --shards or --n must not meet old files
        CANDIDATES.mkdir(parents=True)
        cuts = np.linspace(0, args.n, args.shards + 1).astype(int)
        procs = [subprocess.Popen([sys.executable, __file__, "--shard", str(lo), str(hi), "--k-max", str(args.k_max),
                                   "--model", str(args.model)], cwd=HERE)
                 for lo, hi in zip(cuts[:-1], cuts[1:])]
        if any(p.wait() for p in procs):
            sys.exit("a shard failed; see its output above")
    rows = [r for f in sorted(CANDIDATES.glob("*.json"), key=lambda f: int(f.stem.split("-")[0]))
            for r in json.loads(f.read_text())]
    if len({r["id"] for r in rows}) != len(rows) or len(rows) != args.n:
        sys.exit(f"{CANDIDATES} holds {len(rows)} rows, not the {args.n} questions once each: run without --grid-only")
    res = grid(rows, args.k_max)
    run = json.loads(args.run.read_text())
    same = res["k=2"]["T=1.0"]["em"]
    print(json.dumps(res, indent=1))
    print(f"k=2, T=1 here: EM {same:.1f}; the run's own evaluation: {run['em_after']:.1f}")
    if abs(same - run["em_after"]) > 1e-6:
        sys.exit("the recomputed EM differs from the run's: the candidates are not from --run's model")
    update_results(args.out, {"reader_limit": {
        "command": "python benchmarks/bench_reader_limit.py " + " ".join(sys.argv[1:]), "n": len(rows),
        "model": f"the model of {args.run.resolve().relative_to(HERE.parent)} ({run['command']})",
        "run_em_k2": run["em_after"], "grid": res}})


if __name__ == "__main__":
    main()
