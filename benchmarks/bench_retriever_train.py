"""Retriever-only fine-tuning on the SQuAD open-book split: MiniLM trained with ragtune's contrastive objective.

Knowledge base: the 2,067 SQuAD v1.1 dev paragraphs in the MiniLM index bench_finetune.py caches. Training
questions: articles 0-35 (positive = the question's paragraph); test: every question of articles 36-47 and the
fixed 200-question sample of bench_qa.py. Reported: Recall@1/5/20 before and after training the query encoder
only (the index stays as built, the RAG setting), with in-batch negatives alone and with one BM25 hard negative
per question (DPR), plus training examples/s.

Side by side (speed): one training step with both sides trained (tied encoder, passages re-embedded with
gradient) against sentence-transformers' MultipleNegativesRankingLoss on the same triples (question, positive,
the same mined BM25 negative), same model, scale (1 / temperature 0.05), batch and sequence length; steps
interleaved, medians reported.

    .venv/bin/python benchmarks/bench_retriever_train.py --epochs 1 --batch-size 32 --out benchmarks/results/retriever_train.json
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_finetune import WORK, dense_retriever, log, peak_rss_mb, recall_at, test_sample
from ragtune.config import TrainingConfig
from ragtune.generation import Generator
from ragtune.rag.model import RAG
from ragtune.retrieval.sparse import BM25Retriever
from ragtune.training import negatives as neg
from ragtune.corpus.squad import QARecord
from ragtune.training.trainer import Trainer
from shared_data import MemoryStore, squad_open_book

OUT = Path(__file__).parent / "results" / "retriever_train.json"


def train_run(rag, rows, bm25, args, hard: int, label: str) -> dict:
    cfg = TrainingConfig(objective="contrastive", hard_negatives=hard, train_generator=False, batch_size=args.batch_size,
                         epochs=args.epochs, encoder_lr=args.lr, warmup_ratio=0.1, eval_every=10**9,
                         save_every=10**9, seed=0)
    tr = Trainer(rag, rows, None, cfg, WORK / f"retriever_{label}", progress=True, negatives=bm25)
    res = tr.train()
    return {"steps": res.steps, "examples": res.examples, "seconds": res.seconds,
            "examples_per_s": res.examples / res.seconds, "loss_first": res.losses[0],
            "loss_last_20_mean": float(np.mean(res.losses[-20:]))}


def triples(batch, store, bm25) -> list[list[str]]:
    """(questions, positives, hard negatives) for sentence-transformers: ragtune's own positive and first mined
    BM25 negative of each question that has one, so both sides train on the same texts."""
    pos = neg.positives(batch, store)
    ranked = bm25.search([e.question for e in batch], 12).passages(store)
    hard = neg.hard_negatives(batch, ranked, 1)
    keep = [i for i, h in enumerate(hard) if h]
    return [[batch[i].question for i in keep], [pos[i].text for i in keep], [hard[i][0].text for i in keep]]


def step_times(rag, rows, bm25, store, args) -> dict:
    """Interleaved training steps, both sides of the encoder training: ragtune's Trainer step vs
    sentence-transformers' MultipleNegativesRankingLoss on the same triples."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    cfg = TrainingConfig(objective="contrastive", hard_negatives=1, train_generator=False, train_doc_encoder=True,
                         batch_size=args.step_batch, encoder_lr=args.lr, max_steps=10**6, seed=0)
    tr = Trainer(rag, rows, None, cfg, WORK / "retriever_steptime", progress=False, negatives=bm25)
    opt = torch.optim.AdamW(tr.params_enc, lr=args.lr)
    st = SentenceTransformer(tr.encoder.path, device="cpu")
    st.max_seq_length = tr.encoder.effective_max_length
    mnrl = MultipleNegativesRankingLoss(st, scale=1 / cfg.contrastive_temperature)
    st_opt = torch.optim.AdamW(st.parameters(), lr=args.lr)
    ours, theirs = [], []
    for rep in range(args.step_reps):
        batch = rows[rep * args.step_batch:(rep + 1) * args.step_batch]
        trip = triples(batch, store, bm25)

        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, n = tr.batch_loss(batch)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(tr.params_enc, 1.0)
        opt.step()
        ours.append(time.perf_counter() - t)

        t = time.perf_counter()
        st.train()
        st_opt.zero_grad(set_to_none=True)
        feats = [st.tokenize(texts) for texts in trip]
        st_loss = mnrl(feats, None)
        st_loss.backward()
        torch.nn.utils.clip_grad_norm_(st.parameters(), 1.0)
        st_opt.step()
        theirs.append(time.perf_counter() - t)
        log(f"  step {rep}: ragtune {ours[-1]:.2f} s, sentence-transformers {theirs[-1]:.2f} s")
    # the first step of each pays one-off costs (allocator warm-up): medians over the rest
    o, s = statistics.median(ours[1:]), statistics.median(theirs[1:])
    return {"batch_size": args.step_batch, "ragtune_s": ours, "sentence_transformers_s": theirs,
            "ragtune_median_s": o, "sentence_transformers_median_s": s, "ratio": o / s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--hard", default="0,1", help="runs: BM25 hard negatives per question, comma-separated")
    ap.add_argument("--step-batch", type=int, default=16)
    ap.add_argument("--step-reps", type=int, default=6, help="interleaved steps for the speed comparison (0 skips it)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    split, passages, pid_of = squad_open_book()
    sample, sample_source = test_sample(split.test)
    rows = [QARecord(q.question, list(dict.fromkeys(q.answers)), [pid_of[q.positive_doc_ids[0]]]) for q in split.train]
    store = MemoryStore(passages)
    bm25 = BM25Retriever()
    bm25.add(passages)
    base = dense_retriever(passages)
    base_state = copy.deepcopy(base.encoder.model.state_dict())
    res: dict = {"command": "python benchmarks/bench_retriever_train.py " + " ".join(sys.argv[1:]),
                 "machine": f"{platform.machine()}, {args.threads} torch thread(s), 2-core CPU shared with other benchmarks",
                 "kb_paragraphs": len(passages), "train_questions": len(rows), "test_questions": len(split.test),
                 "test_sample": sample_source, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "temperature": TrainingConfig().contrastive_temperature, "hard_negatives_runs": args.hard}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))

    def recalls() -> dict:
        return {"sample200": recall_at(base, sample, pid_of), "test_all": recall_at(base, split.test, pid_of)}

    res["recall_before"] = recalls()
    log(f"recall before {res['recall_before']}")
    save()
    gen = Generator("smollm2-135m-instruct")  # never loaded: the contrastive objective does not use it
    for hard in (int(h) for h in args.hard.split(",") if h):
        label = "in_batch" if hard == 0 else f"bm25_hard{hard}"
        base.encoder.model.load_state_dict(base_state)
        rag = RAG(base, gen, store, mode="rag-sequence", k=5)
        log(f"contrastive, {label}")
        run = train_run(rag, rows, bm25, args, hard, label)
        run["recall_after"] = recalls()
        run["peak_rss_mb"] = peak_rss_mb()
        res[label] = run
        log(f"  {run['steps']} steps, {run['examples_per_s']:.1f} ex/s; recall after {run['recall_after']}")
        save()
    if args.step_reps > 0:
        base.encoder.model.load_state_dict(base_state)
        rag = RAG(base, gen, store, mode="rag-sequence", k=5)
        res["step_time"] = step_times(rag, rows, bm25, store, args)
        log(f"step time ratio ragtune / sentence-transformers: {res['step_time']['ratio']:.2f}")
        save()


if __name__ == "__main__":
    main()
