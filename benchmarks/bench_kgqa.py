"""KGQA on PathQuestion (PQ-2H, PQ-3H, PQL-2H, PQL-3H): Hits@1 and path recall@k before and after fine-tuning
the path scorer, for ``path``, ``concat`` and ``rag-sequence`` modes, on two seeded splits.

* random: 8:1:1 by question (seed 0), the split the published numbers use;
* hard: whole (topic entity, relation sequence) groups on one side, so no test pair (nor its paraphrases)
  occurs in training.

"Before" is the packaged MiniLM scoring paths zero-shot; "after" is the same encoder fine-tuned with the
contrastive objective (``ragtune train --objective contrastive``: the gold relation chain as positive, the
batch's other gold chains as negatives; ``--hard-negatives N`` adds the question's own best wrong paths) for ``--steps`` optimiser steps on the training questions (time-capped by
``--minutes``). ``path`` mode runs on the first ``--max-test`` test questions (200: all of PQ-2H, PQL-2H and
PQL-3H's, 200 of PQ-3H's 520); the generator modes (SmolLM2-135M-Instruct, not fine-tuned) on the first
``--gen-n`` test questions of ``--gen-sets``, since they cost seconds per question on a CPU.

    python benchmarks/bench_kgqa.py                      # all four sets, both splits -> results/kgqa.json
    python benchmarks/bench_kgqa.py --sets pq2h --gen-n 0 --steps 20
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import DATASETS  # noqa: E402

SETS = {  # name: (questions, KB)
    "pq2h": ("PQ-2H.txt", "2H-kb.txt"),
    "pq3h": ("PQ-3H.txt", "3H-kb.txt"),
    "pql2h": ("PQL-2H.txt", "PQL2-KB.txt"),
    "pql3h": ("PQL-3H.txt", "PQL3-KB.txt"),
}
ANCHORS = {"IRN (Zhou et al. 2018)": {"pq2h": 96.0, "pq3h": 87.7, "pql2h": 72.5, "pql3h": 71.0},
           "KG-GPT": {"pq2h": 86.1, "pq3h": 42.5}}
OUT = Path(__file__).resolve().parent / "results" / "kgqa.json"


def evaluate(rag, rows, mode: str, k: int, **decoding) -> dict:
    from ragtune.kg.qa import evaluate_kgqa

    r = evaluate_kgqa(rag, rows, mode=mode, k=k, batch_size=16 if mode == "path" else 4, **decoding)
    d = r.to_dict()
    return {"hits1": round(100 * d["hits@1"], 2), "path_recall": round(100 * d[f"path_recall@{k}"], 2),
            "f1": round(100 * d["f1"], 2), "n": d["n"], "seconds_per_question": round(d["seconds_per_question"], 4)}


def modes(rag, test, args, generate: bool = True) -> dict:
    out = {"path": evaluate(rag, test, "path", args.k)}
    if args.gen_n and generate:
        for mode in ("concat", "rag-sequence"):
            out[mode] = evaluate(rag, test[: args.gen_n], mode, args.k, max_new_tokens=args.max_new_tokens)
    return out


def run_split(name: str, index: Path, parts, split: str, work: Path, args) -> dict:
    from ragtune.config import Config
    from ragtune.rag.model import RAG
    from ragtune.training.data import write_examples
    from ragtune.training.run import fine_tune

    train, dev, test = parts
    test = test[: args.max_test] if args.max_test else test
    files = {}
    for part, rows in (("train", train), ("dev", dev)):
        files[part] = work / f"{name}-{split}.{part}.jsonl"
        write_examples([r.record for r in rows], files[part])
    rag = RAG.from_index(index, retriever="paths", mode="path", k=args.k)
    t0 = time.perf_counter()
    before = modes(rag, test, args)
    print(f"{name} {split} before: {before} ({time.perf_counter() - t0:.0f} s)", flush=True)
    cfg = Config().updated(training={"objective": "contrastive", "batch_size": args.batch_size, "encoder_lr": args.lr,
                                     "hard_negatives": args.hard_negatives, "max_steps": args.steps,
                                     "eval_every": 10 ** 6, "save_every": 10 ** 6, "seed": 0})
    out_dir = work / f"{name}-{split}-model"
    from ragtune.training.trainer import Trainer  # noqa: F401  (import cost outside the timed region)

    t0 = time.perf_counter()
    trainer, result = _train(fine_tune, index, files, out_dir, cfg, args)
    train_s = time.perf_counter() - t0
    print(f"{name} {split} trained {result.steps} steps in {train_s:.0f} s, last loss {result.losses[-1]:.3f}", flush=True)
    rag = RAG.from_pretrained(out_dir, index_dir=index, mode="path", k=args.k)
    t0 = time.perf_counter()
    end_to_end = bool(args.gen_n and args.gen_train_minutes)
    after = modes(rag, test, args, generate=not end_to_end)
    print(f"{name} {split} after: {after} ({time.perf_counter() - t0:.0f} s)", flush=True)
    out = {"n_train": len(train), "n_dev": len(dev), "n_test": len(test), "before": before, "after": after,
           "train_steps": result.steps, "train_seconds": round(train_s, 1), "hits1_before": before["path"]["hits1"],
           "hits1_after": after["path"]["hits1"], "path_recall": after["path"]["path_recall"],
           "path_recall_before": before["path"]["path_recall"]}
    if end_to_end:
        out["end_to_end"] = _end_to_end(name, split, index, files, out_dir, work, test, args)
    return out


def _train(fine_tune, index, files, out_dir, cfg, args, minutes=None, generator=None):
    return fine_tune(index, files["train"], out_dir, dev_file=None, config=cfg, progress=False, generator=generator,
                     max_seconds=(minutes or args.minutes) * 60)


def _end_to_end(name, split, index, files, retriever_dir, work, test, args) -> dict:
    """Second stage: generator and path scorer trained end to end (RAG-Sequence NLL of the gold answer) from the
    contrastively trained retriever; then the generator modes on the same test questions as before."""
    from ragtune.config import Config
    from ragtune.rag.model import RAG
    from ragtune.training.run import fine_tune

    cfg = Config().updated(rag={"k": args.gen_train_k},
                           training={"objective": "rag", "batch_size": args.gen_batch_size, "lr": args.gen_lr,
                                     "encoder_lr": args.lr, "max_steps": args.gen_train_steps, "warmup_ratio": 0.05,
                                     "gradient_checkpointing": False, "eval_every": 10 ** 6, "save_every": 10 ** 6, "seed": 0})
    out_dir = work / f"{name}-{split}-e2e"
    t0 = time.perf_counter()
    _, result = _train(fine_tune, index, files, out_dir, cfg, args, minutes=args.gen_train_minutes, generator=str(retriever_dir))
    train_s = time.perf_counter() - t0
    print(f"{name} {split} end to end: {result.steps} steps in {train_s:.0f} s, loss {result.losses[0]:.3f} -> "
          f"{result.losses[-1]:.3f}", flush=True)
    rag = RAG.from_pretrained(out_dir, index_dir=index, mode="path", k=args.k)
    t0 = time.perf_counter()
    after = modes(rag, test, args)
    print(f"{name} {split} after end to end: {after} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"after": after, "train_steps": result.steps, "train_seconds": round(train_s, 1),
            "loss_first": round(result.losses[0], 4), "loss_last": round(result.losses[-1], 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--splits", nargs="*", default=["random", "hard"])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--minutes", type=float, default=3.0, help="Cap on each training run's wall time.")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--hard-negatives", type=int, default=0, help="Path hard negatives per question (each costs a search per step).")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--max-test", type=int, default=200, help="Cap on the test questions of a split (0: all).")
    ap.add_argument("--gen-sets", nargs="*", default=["pq2h"], help="Sets on which the generator modes run.")
    ap.add_argument("--gen-n", type=int, default=6, help="Test questions for the generator modes (0: skip them).")
    ap.add_argument("--gen-splits", nargs="*", default=["random"], help="Splits on which the generator modes run.")
    ap.add_argument("--gen-train-minutes", type=float, default=0.0,
                    help="Then train generator and path scorer end to end for this long (0: the generator stays zero-shot).")
    ap.add_argument("--gen-train-steps", type=int, default=400)
    ap.add_argument("--gen-train-k", type=int, default=3, help="Paths per question in end-to-end training.")
    ap.add_argument("--gen-batch-size", type=int, default=8)
    ap.add_argument("--gen-lr", type=float, default=5e-5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from ragtune.kg.ingest import update_triples
    from ragtune.kg.qa import hard_split, load_kgqa, random_split

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("hard_split", {})
    gen_n = args.gen_n
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.sets:
            qfile, kb = SETS[name]
            index = work / f"{name}-index"
            update_triples(index, [DATASETS / "pathquestion" / kb])
            rows = load_kgqa(DATASETS / "pathquestion" / qfile)
            for split in args.splits:
                args.gen_n = gen_n if split in args.gen_splits and name in args.gen_sets else 0
                parts = (random_split if split == "random" else hard_split)(rows, (8, 1, 1), seed=0)
                res = run_split(name, index, parts, split, work, args)
                (results if split == "random" else results["hard_split"])[name] = res
                args.out.parent.mkdir(parents=True, exist_ok=True)
                results["settings"] = {"k": args.k, "steps": args.steps, "minutes_cap": args.minutes,
                                       "batch_size": args.batch_size, "encoder_lr": args.lr,
                                       "hard_negatives": args.hard_negatives, "gen_n": gen_n, "gen_splits": args.gen_splits, "gen_sets": args.gen_sets, "max_test": args.max_test, "max_new_tokens": args.max_new_tokens,
                                       "gen_train_minutes": args.gen_train_minutes, "gen_train_k": args.gen_train_k,
                                       "gen_batch_size": args.gen_batch_size, "gen_lr": args.gen_lr,
                                       "encoder": "minilm", "generator": "smollm2-135m-instruct", "seed": 0,
                                       "command": "python benchmarks/bench_kgqa.py " + " ".join(sys.argv[1:])}
                results["anchors"] = ANCHORS
                args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: {s: results[k][s] for s in ("hits1_before", "hits1_after", "path_recall")} for k in SETS if k in results}))


if __name__ == "__main__":
    main()
