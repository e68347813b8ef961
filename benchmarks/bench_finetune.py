"""End-to-end fine-tuning on the SQuAD open-book split: SmolLM2-135M (LoRA) + MiniLM query encoder.

Knowledge base: all 2,067 SQuAD v1.1 dev paragraphs in a MiniLM dense index (built once, cached in
benchmarks/.work/). Training questions: articles 0-35; test: the fixed 200-question sample of articles 36-47
that bench_qa.py stored in results/qa.json (the same seed-0 sampling when that file is absent); ``--n-test``
evaluates a prefix of it. Reported before and after training: EM/F1 in rag-sequence, rag-token and concat
modes, Recall@k of the query encoder on the whole 200-question sample, training examples/s and peak memory.

Side by side: one training step of transformers' own RagSequenceForGeneration / RagTokenForGeneration
(random-init DPR question encoder with MiniLM's sizes; a BART generator with SmolLM2's width, heads, FFN and
vocabulary, whose 30-layer encoder reads the context as our 30-layer decoder-only model does, and a 30-layer
decoder over the answer), same batch, k, token sequences and full fine-tuning, against ragtune's Trainer step
(full fine-tuning too, and including retrieval, which the HF step is handed precomputed):
step_time_ratio_hf_rag = ragtune seconds / transformers seconds.

    .venv/bin/python benchmarks/bench_finetune.py --train-minutes 15 --n-test 50 --k 3
    .venv/bin/python benchmarks/bench_finetune.py --step-time-only --step-reps 3 --k 2 --out benchmarks/results/finetune_steptime.json
    .venv/bin/python benchmarks/bench_finetune.py --lean-compare --steps 6 --k 2   # fp32 vs bf16, +-checkpointing

``--precision`` and ``--checkpointing`` set the training run's ``[training] precision`` and
``gradient_checkpointing``; ``--lean-compare`` runs bench_train_lean.py's step-time / peak-RSS comparison.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ragtune.config import DenseConfig, HybridConfig, TrainingConfig
from ragtune.corpus.types import Passage
from ragtune.evaluation.qa import evaluate_qa
from ragtune.generation import Generator
from ragtune.rag.model import RAG
from ragtune.rag.trained import apply_trained_retriever, dense_part
from ragtune.retrieval.dense import DenseRetriever
from ragtune.retrieval.rescore import RescoringRetriever
from ragtune.retrieval.sparse import BM25Retriever
from ragtune.corpus.squad import QARecord
from ragtune.training.checkpoint import seed_everything
from ragtune.training.memory import peak_rss_mb  # also imported from here by the other fine-tuning benchmarks
from ragtune.training.trainer import Trainer
from shared_data import MemoryStore, squad_open_book  # benchmarks/shared_data.py: ../shared/datasets

HERE = Path(__file__).parent
WORK = HERE / ".work"
OUT = HERE / "results" / "finetune.json"
QA_JSON = HERE / "results" / "qa.json"
MODES = ("rag-sequence", "rag-token", "concat")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def test_sample(test_questions) -> tuple[list, str]:
    """bench_qa.py's 200 ids when stored, else its sampling (random.Random(0).sample(test, 200))."""
    by_id = {q.id: q for q in test_questions}
    if QA_JSON.exists():
        ids = json.loads(QA_JSON.read_text()).get("sample_ids") or []
        if ids and all(i in by_id for i in ids):
            return [by_id[i] for i in ids], "results/qa.json sample_ids"
    return random.Random(0).sample(test_questions, 200), "random.Random(0).sample(test, 200)"


def dense_retriever(passages: list[Passage]) -> DenseRetriever:
    path = WORK / "squad_minilm_dense"
    if (path / "dense.json").exists():
        return DenseRetriever.load(path)
    log("encoding the knowledge base with MiniLM (cached afterwards)")
    r = DenseRetriever(DenseConfig(encoder="minilm"))
    r.add(passages)
    r.save(path)
    return r


def first_stage(name: str, passages: list[Passage], sparse_weight: float = HybridConfig().sparse_weight) -> Any:
    """The retriever RAG answers and trains over: the MiniLM index (its query encoder trains through the prior),
    BM25 (scores fixed: the generator alone trains), or rescore: BM25's candidates rescored by
    MiniLM cosine + sparse_weight * BM25 (the query encoder trains through that score)."""
    if name == "dense":
        return dense_retriever(passages)
    bm25 = BM25Retriever()
    bm25.add(passages)
    if name == "rescore":
        return RescoringRetriever([bm25, dense_retriever(passages)], sparse_weight=sparse_weight)
    return bm25


def recall_at(retriever: Any, questions, pid_of: dict[str, int], ks=(1, 5, 20)) -> dict[str, float]:
    dense = dense_part(retriever)
    if dense is not None:
        dense.encoder.model.eval()
    hits = retriever.search([q.question for q in questions], max(ks))
    gold = np.array([pid_of[q.positive_doc_ids[0]] for q in questions])[:, None]
    return {f"recall@{k}": float((hits.ids[:, :k] == gold).any(1).mean()) for k in ks}


def evaluate(rag: RAG, examples: list[QARecord], k: int, modes, max_new_tokens: int, on_mode=None) -> dict:
    out: dict = {}
    for mode in modes:
        t = time.perf_counter()
        rep = evaluate_qa(rag, examples, mode=mode, k=k, batch_size=4, max_new_tokens=max_new_tokens)
        d = rep.to_dict()
        d["em"], d["f1"] = 100 * rep.em, 100 * rep.f1  # percent
        d["wall_seconds"] = time.perf_counter() - t
        d["examples"] = rep.predictions[:3]
        out[mode] = d
        log(f"  {mode:13s} EM {d['em']:.1f} F1 {d['f1']:.1f} ({d['wall_seconds']:.0f} s)")
        if on_mode is not None:  # a long evaluation keeps what it has
            on_mode(out)
    return out


# -- step time against transformers' RAG ---------------------------------------------------------------------

def _hf_rag(kind: str, gen_cfg, enc_cfg, k: int, ffn: int):
    from transformers import (BartConfig, DPRConfig, RagConfig, RagSequenceForGeneration, RagTokenForGeneration)

    q = DPRConfig(vocab_size=enc_cfg.vocab_size, hidden_size=enc_cfg.hidden_size, num_hidden_layers=enc_cfg.num_hidden_layers,
                  num_attention_heads=enc_cfg.num_attention_heads, intermediate_size=enc_cfg.intermediate_size)
    layers = gen_cfg.num_hidden_layers
    g = BartConfig(vocab_size=gen_cfg.vocab_size, d_model=gen_cfg.hidden_size, encoder_layers=layers, decoder_layers=layers,
                   encoder_attention_heads=gen_cfg.num_attention_heads, decoder_attention_heads=gen_cfg.num_attention_heads,
                   encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
                   max_position_embeddings=1024, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2,
                   forced_bos_token_id=None, forced_eos_token_id=None)
    cfg = RagConfig.from_question_encoder_generator_configs(q, g, n_docs=k)
    torch.manual_seed(0)
    cls = RagSequenceForGeneration if kind == "rag-sequence" else RagTokenForGeneration
    return cls(cfg)


def matched_ffn(gen_cfg) -> int:
    """BART FFN width whose layer has the parameters (so the FLOPs per token) of the decoder-only layer.

    SmolLM2's layer is grouped-query attention (q, o: d x d; k, v: d x d*kv/heads) and a SwiGLU MLP (3 x d x f);
    a BART layer is 4 d x d attention and a 2-matrix FFN. With the same f a BART layer does 13% less work per
    context token, which would time two architectures, not two implementations.
    """
    d, f = gen_cfg.hidden_size, gen_cfg.intermediate_size
    kv = getattr(gen_cfg, "num_key_value_heads", None) or gen_cfg.num_attention_heads
    ours = 2 * d * d + 2 * d * d * kv // gen_cfg.num_attention_heads + 3 * d * f
    return round((ours - 4 * d * d) / (2 * d))


def step_time_comparison(trainer: Trainer, rows: list[QARecord], k: int, batch: int, reps: int) -> dict:
    """Seconds per training step, ragtune Trainer vs transformers RAG, interleaved so machine load hits both.

    Two HF generators: BART layers with the decoder-only layer's parameter count (``matched_ffn``, the headline
    ratio) and BART layers with SmolLM2's FFN width (less work per token; reported alongside).
    """
    gen, enc, retriever = trainer.generator, trainer.encoder, trainer.retriever
    params = trainer.params_gen + trainer.params_enc
    opt = torch.optim.AdamW(params, lr=1e-5)
    batches = [rows[i * batch:(i + 1) * batch] for i in range(reps + 1)]
    ffns = {"hf": matched_ffn(gen.model.config), "hf-ffn-same": gen.model.config.intermediate_size}

    def ours(b, mode):
        opt.zero_grad(set_to_none=True)
        loss, n = trainer.batch_loss(b, mode=mode)
        (loss / n).backward()
        opt.step()

    def hf_inputs(b):
        # the very token sequences ragtune scores: prompt with one passage as context, answer (+eos) as labels
        hits = retriever.search([e.question for e in b], k, return_vectors=True)
        ps = [trainer.store.get(row) for row in hits.ids]
        prompts = [gen.build_prompt(e.question, [p]) for e, row in zip(b, ps) for p in row]
        ctx = [ids[-1024:] for ids in gen.encode_prompts(prompts)]
        L = max(len(c) for c in ctx)
        cids = torch.zeros(len(ctx), L, dtype=torch.long)
        cmask = torch.zeros(len(ctx), L, dtype=torch.long)
        for i, c in enumerate(ctx):
            cids[i, : len(c)], cmask[i, : len(c)] = torch.tensor(c), 1
        ys = gen.encode_targets([e.answers[0] for e in b])
        T = max(len(y) for y in ys)
        labels = torch.zeros(len(ys), T, dtype=torch.long)
        for i, y in enumerate(ys):
            labels[i, : len(y)] = torch.tensor(y)
        qtok = enc.tokenizer([e.question for e in b], padding=True, return_tensors="pt")
        return qtok, torch.from_numpy(np.asarray(hits.vectors, dtype=np.float32)), cids, cmask, labels

    def theirs(model, o, b):
        qtok, dvec, cids, cmask, labels = hf_inputs(b)  # retrieval + tokenisation, as in ragtune's step
        o.zero_grad(set_to_none=True)
        qvec = model.question_encoder(qtok["input_ids"], attention_mask=qtok["attention_mask"])[0]
        doc_scores = torch.bmm(qvec.unsqueeze(1), dvec.transpose(1, 2)).squeeze(1)
        out = model(context_input_ids=cids, context_attention_mask=cmask, doc_scores=doc_scores, labels=labels, n_docs=k)
        out.loss.mean().backward()  # reduce_loss=False: one NLL per question
        o.step()

    times: dict[str, list[float]] = {}
    for m in ("rag-sequence", "rag-token"):
        for hf_name, ffn in ffns.items():  # one HF model (and its optimiser state) alive at a time
            model = _hf_rag(m, gen.model.config, enc.model.config, k, ffn)
            o = torch.optim.AdamW(model.parameters(), lr=1e-5)
            for i, b in enumerate(batches):
                for name, fn in ((f"ragtune-{m}", lambda: ours(b, m)), (f"{hf_name}-{m}", lambda: theirs(model, o, b))):
                    t = time.perf_counter()
                    fn()
                    if i > 0:  # the first round warms up allocators and caches
                        times.setdefault(name, []).append(time.perf_counter() - t)
                log(f"  step-time {m} {hf_name} round {i}: " + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in times.items() if v))
            model = o = None  # freed before the next HF model is built
    med = {n: float(np.median(v)) for n, v in times.items()}
    out = {"reps": reps, "batch_size": batch, "k": k, "seconds_per_step_median": med, "seconds_all": times,
           "hf_ffn": ffns, "smollm2_ffn": gen.model.config.intermediate_size,
           "hf_generator": "BART, SmolLM2-135M's d_model/heads/vocab, 30+30 layers; 'hf' has FFN width matched_ffn() "
                           "(a BART layer with the parameters of a SmolLM2 layer), 'hf-ffn-same' SmolLM2's FFN width; "
                           "DPR question encoder with MiniLM sizes"}
    for m in ("rag-sequence", "rag-token"):
        key = m.replace("-", "_")
        out[f"ratio_{key}"] = med[f"ragtune-{m}"] / med[f"hf-{m}"]
        out[f"ratio_{key}_ffn_same"] = med[f"ragtune-{m}"] / med[f"hf-ffn-same-{m}"]
    out["step_time_ratio_hf_rag"] = max(out["ratio_rag_sequence"], out["ratio_rag_token"])
    return out


# -- main ----------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-minutes", type=float, default=60.0)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--encoder-lr", type=float, default=1e-5)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--step-reps", type=int, default=2, help="timed steps per implementation (0 skips the HF comparison)")
    ap.add_argument("--step-time-only", action="store_true", help="only the HF comparison, into a file of its own (--out)")
    ap.add_argument("--after-only", action="store_true",
                    help="only the after-training evaluation (--modes) of the model a run saved, into --out; "
                         "so the modes can be evaluated in parallel processes")
    ap.add_argument("--before-only", action="store_true", help="only the untrained model's evaluation (--modes), into --out")
    ap.add_argument("--recall-only", action="store_true",
                    help="recall@k on the test sample of the retriever and of its dense member alone, before and after "
                         "the training saved in --train-dir (no generation), into --out")
    ap.add_argument("--skip-before", action="store_true", help="train without the before evaluation (run --before-only apart)")
    ap.add_argument("--merge", type=Path, nargs="+", help="fold these --after-only / --step-time-only files into --out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-dir", type=Path, default=WORK / "finetune_out",
                    help="where the trained model and metrics.jsonl go (replaced); --after-only reads it")
    ap.add_argument("--schedule-steps", type=int, default=0,
                    help="the LR schedule's horizon; 0: measured on 3 probe steps, then the run resumes from their checkpoint")
    ap.add_argument("--retriever", choices=["dense", "bm25", "rescore"], default="dense",
                    help="RAG's retriever; with bm25 the query encoder has nothing to train and stays frozen; rescore: "
                         "BM25's candidates rescored by MiniLM cosine + --sparse-weight * BM25 (the encoder trains)")
    ap.add_argument("--sparse-weight", type=float, default=HybridConfig().sparse_weight, help="--retriever rescore's w")
    ap.add_argument("--doc-temperature", type=float, default=None,
                    help="the prior's temperature (default 1; for rescore --sparse-weight, so BM25's term enters the "
                         "prior at its raw scale, as in the bm25 runs)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    ap.add_argument("--checkpointing", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--lean-compare", action="store_true", help="bench_train_lean.py: fp32 vs bf16, +-checkpointing")
    ap.add_argument("--configs", default="fp32,bf16,fp32+ckpt,bf16+ckpt", help="--lean-compare's configurations")
    ap.add_argument("--steps", type=int, default=6, help="--lean-compare: steps per configuration (first untimed)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    # One thread: on a shared 2-core machine two spinning OpenMP threads per process thrash.
    torch.set_num_threads(args.threads)
    modes = args.modes.split(",")
    if args.merge:
        return merge_parts(args.out, args.merge)
    if args.lean_compare:
        from bench_train_lean import OUT as LEAN_OUT, compare

        out = args.out if args.out != OUT else LEAN_OUT
        compare(args.configs.split(","), args.steps, args.k, args.batch_size, args.threads, out,
                "python benchmarks/bench_finetune.py " + " ".join(sys.argv[1:]))
        return

    split, passages, pid_of = squad_open_book()
    sample, sample_source = test_sample(split.test)
    examples = [dataclasses.replace(q, positive_ids=[pid_of[q.positive_doc_ids[0]]]) for q in sample[: args.n_test]]
    train_rows = [QARecord(q.question, list(dict.fromkeys(q.answers)), [pid_of[q.positive_doc_ids[0]]]) for q in split.train]
    random.Random(0).shuffle(train_rows)
    res: dict = {"command": "python benchmarks/bench_finetune.py " + " ".join(sys.argv[1:]),
                 "machine": f"{platform.machine()}, {args.threads} torch thread(s), 2-core CPU shared with one other benchmark",
                 "kb_paragraphs": len(passages), "train_questions": len(train_rows), "test_sample": sample_source,
                 "n_test": len(examples), "k": args.k, "batch_size": args.batch_size, "lr": args.lr,
                 "encoder_lr": args.encoder_lr, "lora_r": args.lora_r, "max_new_tokens": args.max_new_tokens,
                 "generator": "smollm2-135m-instruct (LoRA)", "retriever": args.retriever,
                 "query_encoder": "none (BM25, fixed scores)" if args.retriever == "bm25" else "minilm (trained; index vectors frozen)"}
    if args.retriever == "rescore":
        res["sparse_weight"] = args.sparse_weight
    doc_temperature = args.doc_temperature if args.doc_temperature is not None else (
        args.sparse_weight if args.retriever == "rescore" else 1.0)
    res["doc_temperature"] = doc_temperature

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))

    log(f"kb={len(passages)} train={len(train_rows)} test={len(examples)} ({sample_source})")
    if args.retriever != "dense" and args.step_reps > 0 and not (args.after_only or args.before_only or args.recall_only):
        sys.exit("--step-reps compares against transformers' RAG, which needs the dense retriever: add --step-reps 0")
    retriever = first_stage(args.retriever, passages, args.sparse_weight)
    store = MemoryStore(passages)
    gen = Generator("smollm2-135m-instruct", max_new_tokens=args.max_new_tokens)
    rag = RAG(retriever, gen, store, mode="rag-sequence", k=args.k, doc_temperature=doc_temperature)

    if args.step_time_only or args.after_only or args.before_only or args.recall_only:  # a file of its own: a run may be writing --out
        res = {"command": res["command"], "machine": res["machine"], "batch_size": args.batch_size, "k": args.k,
               "retriever": args.retriever, "doc_temperature": doc_temperature}
    if args.before_only:
        gen.model.eval()

        def keep(partial: dict) -> None:
            res["before"], res["peak_rss_mb"] = partial, peak_rss_mb()
            save()

        evaluate(rag, examples, args.k, modes, args.max_new_tokens, on_mode=keep)
        return
    if args.recall_only:
        sides = {"retriever": retriever, "dense_member": dense_part(retriever)}
        for when in ("before", "after"):
            if when == "after":
                apply_trained_retriever(retriever, args.train_dir)
            for name, r in sides.items():
                if r is not None:
                    res[f"{name}_recall_{when}"] = recall_at(r, sample, pid_of, ks=(1, 2, 5, 20))
                    log(f"{name} recall {when}: {res[f'{name}_recall_{when}']}")
        save()
        return
    if args.after_only:
        trained = args.train_dir
        rag.generator = Generator.load(trained / "generator", max_new_tokens=args.max_new_tokens)
        if args.retriever != "bm25":
            apply_trained_retriever(retriever, trained)
        evaluate_after(rag, retriever, sample, pid_of, examples, args, modes, res, save)
        return
    if not args.step_time_only:
        res["recall_before"] = recall_at(retriever, sample, pid_of)
        log(f"recall before {res['recall_before']}")
        save()
    if args.step_reps > 0:
        log("step time: ragtune vs transformers RAG (full fine-tuning, same batch, k and sequences)")
        full = Trainer(rag, train_rows, None, TrainingConfig(batch_size=args.batch_size, max_steps=1, precision="fp32",
                                                    gradient_checkpointing=False), WORK / "steptime",
                       progress=False)
        base = {n: p.detach().clone() for n, p in gen.model.state_dict().items()}
        enc_base = {n: p.detach().clone() for n, p in retriever.encoder.model.state_dict().items()}
        res["step_time"] = step_time_comparison(full, train_rows[-(args.step_reps + 1) * args.batch_size:], args.k,
                                                args.batch_size, args.step_reps)
        res["step_time_ratio_hf_rag"] = res["step_time"]["step_time_ratio_hf_rag"]
        gen.model.load_state_dict(base)  # undo the timed full fine-tuning steps
        retriever.encoder.model.load_state_dict(enc_base)
        for p in list(gen.model.parameters()) + list(retriever.encoder.model.parameters()):
            p.grad = None
        del full, base, enc_base
        save()
        if args.step_time_only:
            return

    if not args.skip_before:
        log("evaluating before training")
        gen.model.eval()
        res["before"] = evaluate(rag, examples, args.k, modes, args.max_new_tokens)
        res["em_before"] = res["before"].get("rag-sequence", {}).get("em")
        save()

    cfg = TrainingConfig(mode="rag-sequence", lora=True, lora_r=args.lora_r, lora_alpha=2 * args.lora_r, lr=args.lr,
                         encoder_lr=args.encoder_lr, train_query_encoder=args.retriever != "bm25",
                         batch_size=args.batch_size, epochs=1.0, warmup_ratio=0.05,
                         eval_every=10**9, save_every=10**9, seed=0, precision=args.precision,
                         gradient_checkpointing={"on": True, "off": False}.get(args.checkpointing, "auto"))
    res.update(precision=args.precision, gradient_checkpointing=args.checkpointing)
    seed_everything(cfg.seed)  # LoRA's adapters are initialised from the global RNG
    if args.train_dir.exists():  # metrics.jsonl of this run only; never a directory a run did not write
        if not ((args.train_dir / "metrics.jsonl").exists() or (args.train_dir / "checkpoint").exists()):
            sys.exit(f"--train-dir {args.train_dir} exists and holds no training run: not replacing it")
        shutil.rmtree(args.train_dir)
    trainer = Trainer(rag, train_rows, None, cfg, args.train_dir, progress=False)
    budget = args.train_minutes * 60
    if args.schedule_steps:
        # the horizon given: one uninterrupted run, no probe checkpoint to write and load back (+0.3 GB of RSS)
        trainer.cfg = cfg.model_copy(update={"max_steps": args.schedule_steps})
        log(f"schedule over {args.schedule_steps} steps, {budget / 60:.0f} minutes at most")
        probe, result = None, trainer.train(max_seconds=budget)
        seconds = result.seconds
    else:
        # The schedule decays over the steps the time budget should allow, measured on the first few steps.
        probe = trainer.train(stop_after=3)
        per_step = probe.seconds / max(probe.steps, 1)
        total = max(probe.steps + 1, int((budget) / per_step))
        log(f"~{per_step:.1f} s/step -> schedule over {total} steps ({total * args.batch_size} examples)")
        trainer.cfg = cfg.model_copy(update={"max_steps": total})  # same Trainer: LoRA is applied once
        result = trainer.train(resume=True, max_seconds=max(budget - probe.seconds, 1.0))
        seconds = probe.seconds + result.seconds
    steps = result.steps
    res["schedule_steps"] = trainer.cfg.max_steps
    # the process's peak after each step (the trainer's log), to see which step raised it
    trail = [json.loads(line) for line in (args.train_dir / "metrics.jsonl").read_text().splitlines()]
    trail = [(r["step"], r["peak_rss_mb"]) for r in trail if "peak_rss_mb" in r]
    res["peak_rss_mb_rises"] = [[s, round(m)] for i, (s, m) in enumerate(trail) if i == 0 or m > trail[i - 1][1]]
    res["peak_rss_mb_last_step"] = round(trail[-1][1]) if trail else None
    res.update({"train_minutes": seconds / 60, "train_minutes_budget": args.train_minutes, "train_steps": steps,
                "train_examples": steps * args.batch_size, "train_epochs": steps * args.batch_size / len(train_rows),
                "train_examples_per_s": steps * args.batch_size / seconds, "peak_rss_mb": peak_rss_mb(),
                "loss_first": ((probe or result).losses or [None])[0], "loss_last_50_mean": float(np.mean(result.losses[-50:])) if result.losses else None})
    log(f"trained {steps} steps in {seconds / 60:.1f} min; {res['train_examples_per_s']:.2f} ex/s; peak RSS {res['peak_rss_mb']:.0f} MB")
    save()

    evaluate_after(rag, retriever, sample, pid_of, examples, args, modes, res, save)
    save()
    log(f"EM rag-sequence {res.get('em_before')} -> {res['em_after']}")


def evaluate_after(rag, retriever, sample, pid_of, examples, args, modes, res, save) -> None:
    res["recall_after"] = recall_at(retriever, sample, pid_of)
    log(f"recall after {res['recall_after']}")
    log("evaluating after training")
    rag.generator.model.eval()

    def keep(partial: dict) -> None:
        res["after"] = partial
        res["em_after"] = partial.get("rag-sequence", {}).get("em")
        res["peak_rss_mb"] = max(res.get("peak_rss_mb", 0.0), peak_rss_mb())
        save()

    evaluate(rag, examples, args.k, modes, args.max_new_tokens, on_mode=keep)


def merge_parts(out: Path, parts: list[Path]) -> None:
    """Fold the files of --after-only and --step-time-only processes into the main results file."""
    res = json.loads(out.read_text())
    for part in parts:
        d = json.loads(part.read_text())
        if "before" in d:
            res.setdefault("before", {}).update(d["before"])
            res.setdefault("before_commands", []).append(d["command"])
        if "after" in d:
            res.setdefault("after", {}).update(d["after"])
            res["recall_after"] = d["recall_after"]
            res["peak_rss_mb"] = max(res.get("peak_rss_mb", 0.0), d.get("peak_rss_mb", 0.0))
            res.setdefault("after_commands", []).append(d["command"])
        if "step_time" in d:
            res.update(step_time=d["step_time"], step_time_ratio_hf_rag=d["step_time_ratio_hf_rag"],
                       step_time_command=d["command"])
    res["em_before"] = res.get("before", {}).get("rag-sequence", {}).get("em")
    res["em_after"] = res.get("after", {}).get("rag-sequence", {}).get("em")
    out.write_text(json.dumps(res, indent=1))
    log(f"merged {len(parts)} file(s) into {out}")


if __name__ == "__main__":
    main()
