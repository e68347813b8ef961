"""Knowledge-grounded dialogue on KdConv (travel): knowledge Recall@1/5 by how a turn's query is built, and replies
before and after fine-tuning. Trains on ``dev``, reports on ``test`` (the train split is not shared).

Rows:

* retrieval (every test response with knowledge): ``last-turn`` (the message alone: today's chat minus its history),
  ``joined`` (the last user turns joined, the old chat query), ``history`` (entities tracked over the conversation),
  and ``rewrite`` (the generator's standalone question, on the first ``--rewrite-n`` turns);
* fine-tuning, at most ``--minutes-retriever`` + ``--minutes-generator`` CPU minutes:
  1. the path scorer alone, contrastive (the annotated triples' relation chains as positives, in-batch negatives);
  2. end to end from there: RAG-Sequence -log P(reply | history, knowledge) through SmolLM2-135M-Instruct and
     the query encoder;
* replies (the first ``--gen-n`` test responses with knowledge, rag-sequence, k = ``--k``): BLEU-1/4 and
  Distinct-1/2 on characters (``evaluation.dialogue_metrics``), character F1, the share quoting an annotated
  value; and, to compare with the KdConv paper, BLEU and Distinct on jieba words with NLTK's smoothing method 3,
  as its code computes them;
* the no-knowledge choice: ``[chat] min_knowledge`` picked on dev (all turns, with and without knowledge), then
  the share of test turns whose choice (knowledge or none) matches the annotation, against always using knowledge.

    python benchmarks/bench_dialogue.py                   # -> results/dialogue.json (about 75 minutes on 2 cores)
    python benchmarks/bench_dialogue.py --gen-n 8 --minutes-retriever 1 --minutes-generator 1 --out /tmp/d.json
    python benchmarks/bench_dialogue.py --replies-only --max-new-tokens 128 --merge   # the kept model, replies again

The index and the trained models stay in ``benchmarks/.work/dialogue/`` (replaced by the next run), so replies can
be measured again under other decoding settings without training again: ``--decoding beam --min-new-tokens N``,
``--backend ctranslate2``; ``--gen-start S`` replies to test responses S.. instead (apart from the reported replies
when S is at or after the reported run's ``--gen-n``: a slice to choose settings on), filed under ``--section NAME``
(required with ``--gen-start``), so ``replies_after`` stays:

    python benchmarks/bench_dialogue.py --replies-only --merge --gen-n 30 --gen-start 120 --max-new-tokens 128 \
        --prompt-exchanges 1 --backend ctranslate2 --decoding beam --min-new-tokens 36 --section tune_ct2_beam_min36
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import shutil
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import DATASETS  # noqa: E402

KDCONV = DATASETS / "kdconv_travel"
KB = KDCONV / "kb_travel.json"
OUT = Path(__file__).resolve().parent / "results" / "dialogue.json"
WORK = Path(__file__).resolve().parent / ".work" / "dialogue"
# KdConv (Zhou et al., ACL 2020), travel domain, test set: BLEU-1..4 and Distinct-1..4 in percent (jieba words,
# NLTK corpus_bleu with smoothing method 3), as quoted in Table 1 of Wang et al., AAAI 2024 ("Improving the
# Robustness of Knowledge-Grounded Dialogue via Contrastive Learning"), which credits them to Zhou et al. The
# "+Know" models read a memory of the triples annotated in their conversation (an oracle of the knowledge, not
# retrieved from the knowledge base); the paper reports no knowledge-selection score at test time.
ANCHORS = {
    "Seq2Seq": {"bleu1": 29.61, "bleu2": 20.04, "bleu3": 14.91, "bleu4": 11.74, "distinct1": 3.75, "distinct2": 11.15},
    "HRED": {"bleu1": 30.92, "bleu2": 20.97, "bleu3": 15.61, "bleu4": 12.30, "distinct1": 4.15, "distinct2": 12.01},
    "Seq2Seq+Know": {"bleu1": 37.04, "bleu2": 27.28, "bleu3": 22.16, "bleu4": 18.94, "distinct1": 4.25, "distinct2": 13.64},
    "HRED+Know": {"bleu1": 36.87, "bleu2": 26.68, "bleu3": 21.31, "bleu4": 17.96, "distinct1": 3.98, "distinct2": 13.31},
}


# the headline numbers, computed from the sections (after a --merge, from the merged ones)
SUMMARY = ("recall1_last_turn", "recall1_history", "recall1_last_turn_after", "recall1_after", "recall1_after_dense_only",
           "bleu4_after", "f1_after", "paper_bleu4_after_pooled",
           "paper_bleu4_after", "from_earlier_run")


def pct(x):
    return None if x is None else round(100 * x, 2)


PROMPT_EXCHANGES: dict = {}  # {"prompt_exchanges": n} from --prompt-exchanges, for every RAG built here


def with_chat(rag, **fields):
    from ragtune.config import ChatConfig

    rag.chat = ChatConfig.model_validate(rag.chat.model_dump() | PROMPT_EXCHANGES | fields)
    return rag


def recall(rag, examples, query: str) -> dict:
    from ragtune.evaluation.dialogue import evaluate_dialogue

    t0 = time.perf_counter()
    r = evaluate_dialogue(with_chat(rag, query=query), examples, generate=False, batch_size=32)
    return {"recall1": pct(r.recall[1]), "recall5": pct(r.recall[5]), "n": r.n, "seconds": round(time.perf_counter() - t0, 1)}


def paper_scores(replies, refs) -> dict:
    """BLEU-1..4 and Distinct-1/2 as the KdConv code computes them: jieba words, corpus BLEU, smoothing method 3;
    distinct over the whole set, skipping each reply's last n-gram as its loop does."""
    import jieba
    import numpy as np
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    hyp = [jieba.lcut(h) for h in replies]
    ref = [[jieba.lcut(r)] for r in refs]
    smooth = SmoothingFunction().method3
    out = {f"bleu{n}": round(100 * corpus_bleu(ref, hyp, weights=tuple([1 / n] * n), smoothing_function=smooth), 2)
           for n in (1, 2, 3, 4)}
    # how far BLEU-4 of these responses is from the test set's: resample the responses (1,000 bootstrap sets)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(1000):
        idx = rng.integers(0, len(hyp), len(hyp))
        boot.append(100 * corpus_bleu([ref[i] for i in idx], [hyp[i] for i in idx], smoothing_function=smooth))
    out["bleu4_bootstrap_95"] = [round(float(x), 2) for x in np.percentile(boot, [2.5, 97.5])]
    # replies shorter than the references pay BLEU's brevity penalty exp(1 - ref/hyp) on every order
    words, ref_words = sum(len(h) for h in hyp), sum(len(r[0]) for r in ref)
    out["length_ratio"] = round(words / max(ref_words, 1), 3)
    out["brevity_penalty"] = round(1.0 if words > ref_words else math.exp(1 - ref_words / max(words, 1)), 3)
    for n in (1, 2):
        grams = [tuple(s[i:i + n]) for s in hyp for i in range(0, len(s) - n)]
        out[f"distinct{n}"] = round(100 * len(set(grams)) / max(len(grams), 1), 2)
    return out


def replies(rag, examples, args) -> dict:
    from ragtune.evaluation.dialogue import evaluate_dialogue

    r = evaluate_dialogue(with_chat(rag, query="history"), examples, mode="rag-sequence", k=args.k, batch_size=4,
                          max_new_tokens=args.max_new_tokens, thorough=False, **decoding_options(args))
    d = r.to_dict()
    got = [p["reply"] for p in r.predictions]
    out = {name: pct(d[name]) for name in ("knowledge_recall@1", "bleu1", "bleu4", "f1", "distinct1", "distinct2", "value_rate")}
    out |= {"paper_metrics": paper_scores(got, [e.response for e in examples]), "n": r.n,
            "seconds_per_turn": round(d["seconds_per_turn"], 2), "samples": [{"message": e.message, "reference": e.response,
                                                                             "reply": g} for e, g in list(zip(examples, got))[:5]],
            "replies": got}
    return out


def pooled(res: dict, sections: list[str], test) -> dict:
    """The paper's metrics and character F1 over the replies of several ``--replies-only`` sections at once (one
    model, one decoding, disjoint test slices): a larger sample of the test set than any one of them."""
    from ragtune.evaluation.dialogue_metrics import char_f1, contains_value

    bad = [s for s in sections if not {"replies", "first_test_response"} <= set(res.get(s, {}))]
    if bad:
        sys.exit(f"--pool takes sections written by --replies-only (with their replies): not {bad}")
    settings = {json.dumps([res[s].get(k) for k in ("decoding", "backend", "w_sparse", "max_new_tokens")]) for s in sections}
    if len(settings) != 1:
        sys.exit(f"--pool: {', '.join(sections)} were not decoded alike ({settings})")
    got, seen = [], set()
    for s in sections:
        if len(res[s]["replies"]) != res[s]["n"]:
            sys.exit(f"--pool: {s} keeps {len(res[s]['replies'])} of its {res[s]['n']} replies")
        first = res[s]["first_test_response"]
        idx = range(first, first + len(res[s]["replies"]))
        if seen & set(idx):
            sys.exit(f"--pool: {s} overlaps the test responses of an earlier section")
        seen |= set(idx)
        got += [(test[i], r) for i, r in zip(idx, res[s]["replies"])]
    refs, hyps = [e.response for e, _ in got], [r for _, r in got]
    n = len(got)
    return {"sections": sections, "n": n, "paper_metrics": paper_scores(hyps, refs),
            "f1": pct(sum(char_f1(h, r) for h, r in zip(hyps, refs)) / n),
            "value_rate": pct(sum(contains_value(h, [o for _, _, o in e.knowledge]) for e, h in got) / n),
            "knowledge_recall@1": round(sum(res[s]["knowledge_recall@1"] * len(res[s]["replies"]) for s in sections) / n, 2)}


def decoding_options(args) -> dict:
    """The reply decoding the command line asked for (greedy unless ``--decoding beam``)."""
    out = {"decoding": args.decoding, "min_new_tokens": args.min_new_tokens}
    return out if args.decoding == "greedy" else out | {"num_beams": args.num_beams, "length_penalty": args.length_penalty}


def no_knowledge(rag, dev_all, test_all) -> dict:
    """Pick ``min_knowledge`` on dev by decision accuracy, report it on test beside always using knowledge. A turn
    keeps knowledge iff its best retrieval score reaches the threshold, so the sweep reads each turn's best score
    once; the chosen threshold is then run through ``eval dialogue``'s own path on test, which must agree."""
    import numpy as np

    from ragtune.evaluation.dialogue import evaluate_dialogue

    def best_and_needed(examples):
        hits = with_chat(rag, query="history", min_knowledge=None).retrieve_turns(
            [e.message for e in examples], [e.history for e in examples], 1)
        best = np.where(hits.ids[:, 0] >= 0, np.nan_to_num(hits.scores[:, 0], nan=-np.inf), -np.inf)
        return best, np.array([bool(e.knowledge) for e in examples])

    dev_best, dev_need = best_and_needed(dev_all)
    test_best, test_need = best_and_needed(test_all)
    def accuracy(best, need, t):  # a turn with no passage at all (no entity in play) never uses knowledge
        return float(((np.isfinite(best) & (best >= t)) == need).mean())

    finite = dev_best[np.isfinite(dev_best)]
    grid = [-np.inf] + sorted(set(np.quantile(finite, np.linspace(0.0, 0.8, 33)).tolist()))
    dev_acc = [accuracy(dev_best, dev_need, t) for t in grid]
    t = grid[int(np.argmax(dev_acc))]
    test_acc = accuracy(test_best, test_need, t)
    report = evaluate_dialogue(with_chat(rag, query="history", min_knowledge=float(t) if np.isfinite(t) else None), test_all,
                               generate=False, batch_size=32)
    assert abs(report.decision_accuracy - test_acc) < 1e-9, (report.decision_accuracy, test_acc)
    with_chat(rag, min_knowledge=None)
    return {"threshold": float(t), "dev_accuracy": pct(max(dev_acc)), "dev_accuracy_no_threshold": pct(dev_acc[0]),
            "test_accuracy": pct(test_acc), "test_accuracy_no_threshold": pct(accuracy(test_best, test_need, -np.inf)),
            "test_share_with_knowledge": pct(float(test_need.mean())),
            "test_recall1_with_threshold": pct(report.recall[1]), "test_turns": len(test_all),
            "test_turns_with_knowledge": int(test_need.sum())}


SPARSE_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


def tune_sparse(rag, dev, test, index: Path) -> dict:
    """Pick ``w_sparse`` (the weight of the relation names' overlap with the turn's query in f(q, z)) on dev by
    history Recall@1, record it with the index's graph (so every later search, training included, uses it), and
    measure test Recall@1/5 with it."""
    import dataclasses

    from ragtune.kg.ingest import update_triples

    ret = rag.retriever
    dev_r1 = {}
    for w in SPARSE_GRID:
        ret.settings = dataclasses.replace(ret.settings, w_sparse=w)
        dev_r1[str(w)] = recall(rag, dev, "history")["recall1"]
    best = max(SPARSE_GRID, key=lambda w: (dev_r1[str(w)], -w))
    ret.settings = dataclasses.replace(ret.settings, w_sparse=best)
    update_triples(index, [KB], search={"w_sparse": best})
    return {"chosen": best, "dev_recall1": dev_r1, "test": {q: recall(rag, test, q) for q in ("last-turn", "history")}}


def train_retriever(index: Path, rows: Path, out: Path, args):
    from ragtune.config import Config
    from ragtune.training.run import fine_tune

    cfg = Config().updated(training={"objective": "contrastive", "batch_size": 32, "encoder_lr": 5e-5, "hard_negatives": 0,
                                     "warmup_ratio": 0.1, "epochs": 3, "eval_every": 10 ** 6, "save_every": 10 ** 6, "seed": 0})
    return fine_tune(index, rows, out, config=cfg, retriever="paths", progress=False, max_seconds=args.minutes_retriever * 60)


def train_end_to_end(index: Path, rows: Path, retriever_dir: Path, out: Path, args):
    """RAG-Sequence from the contrastive path scorer on: fine_tune's set-up with the trained encoder put in place."""
    from ragtune.config import Config
    from ragtune.rag.model import RAG
    from ragtune.training.checkpoint import seed_everything
    from ragtune.training.data import load_examples
    from ragtune.training.trainer import Trainer

    cfg = Config().updated(rag={"k": args.k}, training={
        "objective": "rag", "mode": "rag-sequence", "batch_size": args.batch_size, "lr": args.lr, "encoder_lr": 1e-5, "epochs": 1,
        "warmup_ratio": 0.05, "eval_every": 10 ** 6, "save_every": 10 ** 6, "seed": 0})
    train, _ = load_examples(rows)
    rag = with_chat(RAG.from_pretrained(retriever_dir, index_dir=index, mode="rag-sequence", k=args.k))
    seed_everything(0)
    trainer = Trainer(rag, train, None, cfg.training, out, index_dir=index, progress=False)
    return trainer, trainer.train(max_seconds=args.minutes_generator * 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--gen-n", type=int, default=200, help="Test responses replied to before and after (0: skip).")
    ap.add_argument("--rewrite-n", type=int, default=100, help="Test turns retrieved with the generator's rewrite.")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--decoding", choices=("greedy", "beam"), default="greedy", help="How replies are decoded.")
    ap.add_argument("--num-beams", type=int, default=4)
    ap.add_argument("--min-new-tokens", type=int, default=0, help="No reply ends before this many tokens.")
    ap.add_argument("--length-penalty", type=float, default=1.0,
                    help="Beam search ranks a reply by its log-probability / length ** this (above 0 favours longer).")
    ap.add_argument("--gen-start", type=int, default=0,
                    help="Reply to the test responses from this one on (a slice apart from the reported first --gen-n).")
    ap.add_argument("--section", default="replies_after",
                    help="With --replies-only: the results section the replies go to (another name keeps replies_after).")
    ap.add_argument("--backend", choices=("torch", "ctranslate2"), default="torch",
                    help="Generator backend for --replies-only.")
    ap.add_argument("--minutes-retriever", type=float, default=8.0)
    ap.add_argument("--minutes-generator", type=float, default=45.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=8, help="End-to-end training's batch size.")
    ap.add_argument("--prompt-exchanges", type=int, default=None,
                    help="[chat] prompt_exchanges: the earlier exchanges a reply prompt shows (default: all).")
    ap.add_argument("--no-replies-before", action="store_true", help="Skip the untrained model's replies.")
    ap.add_argument("--merge", action="store_true", help="Update --out's JSON instead of replacing it.")
    ap.add_argument("--replies-only", action="store_true",
                    help="Only the replies of the end-to-end model the last run kept in benchmarks/.work/dialogue (with --merge).")
    ap.add_argument("--tune-sparse", action="store_true",
                    help="With --replies-only: choose the kept model's w_sparse on dev first (see tune_sparse).")
    ap.add_argument("--pool", nargs="+", metavar="SECTION",
                    help="Only score these --replies-only sections' replies together, into replies_pooled (with --merge).")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if (args.replies_only or args.pool) and not (args.merge and args.out.exists()):
        ap.error("--replies-only and --pool add to an earlier run's results: give --merge and an existing --out")
    if not args.replies_only and (args.gen_start or args.section != "replies_after" or args.backend != "torch"
                                  or args.tune_sparse):
        ap.error("--gen-start, --section, --backend and --tune-sparse are for --replies-only")
    if args.pool and args.replies_only:
        ap.error("--pool scores replies already made: not with --replies-only")
    if args.gen_start and args.section == "replies_after":
        ap.error("--gen-start replies to other responses than the reported ones: file them under --section NAME")
    if args.prompt_exchanges is not None:
        PROMPT_EXCHANGES["prompt_exchanges"] = args.prompt_exchanges

    from ragtune.dialogue.kdconv import load_kdconv, training_row
    from ragtune.kg.ingest import update_triples
    from ragtune.rag.model import RAG
    from ragtune.training.data import write_examples

    dev, test = load_kdconv(KDCONV / "dev.json"), load_kdconv(KDCONV / "test.json")
    dev_all = load_kdconv(KDCONV / "dev.json", with_knowledge_only=False)
    test_all = load_kdconv(KDCONV / "test.json", with_knowledge_only=False)
    res: dict = {"prompt_exchanges": args.prompt_exchanges, "lr": args.lr, "batch_size": args.batch_size,
                 "dataset": "KdConv travel", "n_train": len(dev), "n_test": len(test), "k": args.k, "anchors": ANCHORS,
                 "command": "python " + " ".join(["benchmarks/bench_dialogue.py", *sys.argv[1:]])}
    if args.pool:
        got = pooled(json.loads(args.out.read_text(encoding="utf-8")), args.pool, test) | {"command": res["command"]}
        print("replies_pooled:", json.dumps(got), flush=True)
        return finish({"replies_pooled": got}, args)
    work = WORK
    # what the kept model was trained for: --replies-only measures it only for the same results file and settings
    manifest = {"out": str(args.out.resolve()), "k": args.k, "prompt_exchanges": args.prompt_exchanges}
    if args.replies_only:
        kept = json.loads((work / "run.json").read_text()) if (work / "run.json").exists() else None
        if kept is None or not (work / "e2e").exists() or {k: kept.get(k) for k in manifest} != manifest:
            sys.exit(f"{work} holds no end-to-end model trained for {manifest} (it holds {kept}); run the benchmark first")
        # the kept model measured again: only its replies change (and say which command made them)
        rag = RAG.from_pretrained(work / "e2e", index_dir=work / "kb", k=args.k, backend=args.backend)
        if args.tune_sparse:  # the kept model's relation-name weight, chosen on dev; --gen-n 0: no replies after it
            tuned = {"sparse_weight": tune_sparse(rag, dev, test, work / "kb") | {
                "model": "the kept end-to-end model", "without": "retrieval_end_to_end", "command": res["command"]}}
            print("sparse weight:", json.dumps(tuned), flush=True)
            if not args.gen_n:
                return finish(tuned, args)
        else:
            tuned = {}
        got = replies(rag, test[args.gen_start: args.gen_start + args.gen_n], args) | {
            "w_sparse": rag.retriever.settings.w_sparse,
            "max_new_tokens": args.max_new_tokens, "command": res["command"], "backend": args.backend,
            "decoding": decoding_options(args), "first_test_response": args.gen_start}
        print(f"{args.section}:", json.dumps(got, ensure_ascii=False), flush=True)
        return finish(tuned | {args.section: got}, args)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "run.json").write_text(json.dumps(manifest | {"command": res["command"]}))
    index = work / "kb"
    update_triples(index, [KB])
    rows = work / "dev.jsonl"
    write_examples([training_row(e) for e in dev], rows)

    rag = RAG.from_index(index, k=args.k)
    before = {q: recall(rag, test, q) for q in ("last-turn", "joined", "history")}
    if args.rewrite_n:
        before["rewrite"] = recall(rag, test[: args.rewrite_n], "rewrite")
        before["history_same_turns"] = recall(rag, test[: args.rewrite_n], "history")
    print("before:", json.dumps(before), flush=True)
    res["retrieval_before"] = before
    if args.gen_n and not args.no_replies_before:
        res["replies_before"] = replies(rag, test[: args.gen_n], args) | {"max_new_tokens": args.max_new_tokens}
        print("replies before:", json.dumps(res["replies_before"], ensure_ascii=False), flush=True)

    t0 = time.perf_counter()
    _, r1 = train_retriever(index, rows, work / "retriever", args)
    t1 = time.perf_counter()
    rag = RAG.from_pretrained(work / "retriever", index_dir=index, k=args.k)
    after = {q: recall(rag, test, q) for q in ("last-turn", "history")}
    print("after retriever training:", json.dumps(after), flush=True)
    res["retrieval_after"] = after
    res["sparse_weight"] = tune_sparse(rag, dev, test, index) | {"model": "the contrastive path scorer",
                                                                 "without": "retrieval_after", "command": res["command"]}
    print("sparse weight:", json.dumps(res["sparse_weight"]), flush=True)
    res["no_knowledge"] = no_knowledge(rag, dev_all, test_all)
    print("no knowledge:", json.dumps(res["no_knowledge"]), flush=True)

    t2 = time.perf_counter()
    _, r2 = train_end_to_end(index, rows, work / "retriever", work / "e2e", args)
    t3 = time.perf_counter()
    res["training"] = {"retriever_steps": r1.steps, "retriever_seconds": round(t1 - t0, 1), "retriever_last_loss": r1.losses[-1],
                       "end_to_end_steps": r2.steps, "end_to_end_seconds": round(t3 - t2, 1),
                       "end_to_end_first_loss": r2.losses[0], "end_to_end_last_loss": r2.losses[-1],
                       "cpu_minutes": round((t1 - t0 + t3 - t2) / 60, 1)}
    print("training:", json.dumps(res["training"]), flush=True)
    rag = RAG.from_pretrained(work / "e2e", index_dir=index, k=args.k)
    res["retrieval_end_to_end"] = {q: recall(rag, test, q) for q in ("last-turn", "history")}
    if args.rewrite_n:
        res["retrieval_end_to_end"]["rewrite"] = recall(rag, test[: args.rewrite_n], "rewrite")
    if args.gen_n:
        res["replies_after"] = replies(rag, test[: args.gen_n], args)
        res["replies_after"]["max_new_tokens"] = args.max_new_tokens
        print("replies after:", json.dumps(res["replies_after"], ensure_ascii=False), flush=True)

    finish(res, args)


def finish(res: dict, args) -> None:
    if args.merge and args.out.exists() and "training" not in res:  # --replies-only: the same model's replies again
        res = json.loads(args.out.read_text(encoding="utf-8")) | res
    elif args.merge and args.out.exists():
        # what this run did not measure keeps the earlier run's rows, named in "from_earlier_run"; the end-to-end
        # rows and replies of the earlier run are dropped: they measured another trained model
        old = json.loads(args.out.read_text(encoding="utf-8"))
        for section in ("retrieval_end_to_end", "replies_after"):
            old.get(section, {}).clear()
        for section in ("sparse_weight", "replies_pooled"):  # of the earlier model too
            old.pop(section, None)
        # replies measured with --replies-only (they name their first response) are of the model trained before
        old = {k: v for k, v in old.items() if not (isinstance(v, dict) and "first_test_response" in v)}
        kept = [f"{k}.{r}" for k, v in res.items() if isinstance(v, dict) and isinstance(old.get(k), dict)
                for r in old[k] if r not in v] + [k for k in old if k not in res and k not in SUMMARY]
        res = old | {k: old[k] | v if isinstance(v, dict) and isinstance(old.get(k), dict) else v for k, v in res.items()}
        res["from_earlier_run"] = kept
    before, after_gen, tuned = res["retrieval_before"], res.get("replies_after", {}), res.get("sparse_weight") or {}
    res |= {"recall1_last_turn": before["last-turn"]["recall1"], "recall1_history": before["history"]["recall1"],
            "recall1_last_turn_after": res["retrieval_after"]["last-turn"]["recall1"],
            # after fine-tuning: the path scorer with the relation-name weight chosen on dev, when one was chosen,
            # beside the same model's dense score alone
            "recall1_after": tuned.get("test", res["retrieval_after"])["history"]["recall1"],
            "recall1_after_dense_only": res[tuned.get("without", "retrieval_after")]["history"]["recall1"],
            "bleu4_after": after_gen.get("bleu4"), "f1_after": after_gen.get("f1"),
            "paper_bleu4_after": after_gen.get("paper_metrics", {}).get("bleu4"),
            "paper_bleu4_after_pooled": res.get("replies_pooled", {}).get("paper_metrics", {}).get("bleu4")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
