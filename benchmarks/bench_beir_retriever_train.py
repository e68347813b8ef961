"""Retriever-only fine-tuning on BEIR SciFact (train qrels -> test nDCG@10): ragtune's contrastive objective
against sentence-transformers' MultipleNegativesRankingLoss on the same model, triples, batches and schedule.

MiniLM is the starting point (SciFact is not in its training data, unlike SQuAD). Training rows come from
``training.data.beir_rows`` (809 train queries; the positive is the first relevant abstract), hard negatives
from ragtune's BM25 (``training.negatives``: top passages that are not relevant). Three runs from the same
weights, each 1 epoch by default, batch 32, AdamW lr 2e-5 with 10% warm-up and linear decay, temperature 0.05:

* ``ragtune_query_only``: ``Trainer.train`` with the index frozen (the RAG setting: only queries re-encoded);
* ``ragtune_tied``: both sides trained (passages re-embedded with gradient), then the corpus re-encoded;
* ``st_mnrl``: sentence-transformers, same triples and batches, then the corpus re-encoded with its weights.

The last two run step by step interleaved, so their step times compare under the same load.

    .venv/bin/python benchmarks/bench_beir_retriever_train.py --out benchmarks/results/beir_retriever_train.json
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

import torch

from bench_dense import DATA, cached_passage_vectors
from bench_retriever_train import triples
from ragtune.config import DenseConfig, TrainingConfig
from ragtune.corpus.types import Passage
from ragtune.evaluation.retrieval import evaluate_retrieval
from ragtune.generation import Generator
from ragtune.rag.model import RAG
from ragtune.retrieval.dense import DenseRetriever, Encoder
from ragtune.retrieval.sparse import BM25Retriever
from ragtune.training.data import beir_rows
from ragtune.training.schedule import linear_warmup_decay
from ragtune.training.trainer import Trainer
from shared_data import MemoryStore

HERE = Path(__file__).parent
WORK = HERE / ".work"
OUT = HERE / "results" / "beir_retriever_train.json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for n, line in enumerate(open(path, encoding="utf-8")):
        q, d, s = line.rstrip("\n").split("\t")[:3]
        if n == 0 and not s.isdigit():
            continue
        out.setdefault(q, {})[d] = int(s)
    return out


def ndcg(retriever, passages, queries, qrels) -> dict:
    doc_of = {p.id: p.doc_id for p in passages}
    r = evaluate_retrieval(retriever, lambda ids: [doc_of.get(i) for i in ids], queries, qrels)
    return {k: r.metrics[k] for k in ("ndcg@10", "recall@10", "recall@100", "mrr@10")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    corpus = read_jsonl(DATA / "corpus.jsonl")
    passages = [Passage(id=i, doc_id=d["_id"], text=d["text"], title=d.get("title", "")) for i, d in enumerate(corpus)]
    pid_of = {p.doc_id: p.id for p in passages}
    queries = {q["_id"]: q["text"] for q in read_jsonl(DATA / "queries.jsonl")}
    test = {q: r for q, r in read_qrels(DATA / "qrels" / "test.tsv").items() if q in queries}
    rows = list(beir_rows(DATA, "train", doc_passage_ids=lambda d: [pid_of[d]] if d in pid_of else []))
    store = MemoryStore(passages)
    bm25 = BM25Retriever()
    bm25.add(passages)

    dense = DenseRetriever(DenseConfig(encoder="minilm"))
    vecs, _ = cached_passage_vectors(dense.encoder, passages, use_cache=True)
    dense.add_vectors([p.id for p in passages], vecs)
    base_state = copy.deepcopy(dense.encoder.model.state_dict())
    res: dict = {"command": "python benchmarks/bench_beir_retriever_train.py " + " ".join(sys.argv[1:]),
                 "machine": f"{platform.machine()}, {args.threads} torch thread(s), 2-core CPU shared with other benchmarks",
                 "docs": len(passages), "train_rows": len(rows), "test_queries": len(test), "epochs": args.epochs,
                 "batch_size": args.batch_size, "lr": args.lr, "temperature": TrainingConfig().contrastive_temperature,
                 "hard_negatives": 1}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))

    res["before"] = {"minilm": ndcg(dense, passages, queries, test), "bm25": ndcg(bm25, passages, queries, test)}
    log(f"before {res['before']}")
    save()
    gen = Generator("smollm2-135m-instruct")  # never loaded

    def trainer(train_doc: bool) -> Trainer:
        dense.encoder.model.load_state_dict(base_state)  # the index is untouched until the tied run re-encodes it
        cfg = TrainingConfig(objective="contrastive", hard_negatives=1, train_doc_encoder=train_doc,
                             batch_size=args.batch_size, epochs=args.epochs, encoder_lr=args.lr, warmup_ratio=0.1,
                             eval_every=10**9, save_every=10**9, seed=0)
        return Trainer(RAG(dense, gen, store, k=5), rows, None, cfg, WORK / "beir_retriever", progress=False,
                       negatives=bm25)

    # 1. query encoder only, the index as built: Trainer.train end to end
    tr = trainer(False)
    r = tr.train()
    res["ragtune_query_only"] = {"steps": r.steps, "seconds": r.seconds, "examples_per_s": r.examples / r.seconds,
                                 "after": ndcg(dense, passages, queries, test)}
    log(f"query only: {res['ragtune_query_only']}")
    save()

    # 2 and 3. both sides, ragtune vs sentence-transformers, interleaved step by step on the same batches
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    tr = trainer(True)
    st = SentenceTransformer(tr.encoder.path, device="cpu")
    st.max_seq_length = tr.encoder.effective_max_length
    mnrl = MultipleNegativesRankingLoss(st, scale=1 / tr.cfg.contrastive_temperature)
    total = tr.total_steps
    opts = []
    for params in (tr.params_enc, list(st.parameters())):
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
        opts.append((opt, torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(round(0.1 * total), total))))
    ours, theirs, losses = [], [], ([], [])
    for step in range(total):
        batch = [e for b in tr.step_examples(step) for e in b]
        trip = triples(batch, store, bm25)
        (opt, sched), (st_opt, st_sched) = opts
        t = time.perf_counter()
        tr.encoder.model.train()
        opt.zero_grad(set_to_none=True)
        loss, n = tr.batch_loss(batch)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(tr.params_enc, 1.0)
        opt.step()
        sched.step()
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        st.train()
        st_opt.zero_grad(set_to_none=True)
        st_loss = mnrl([st.tokenize(x) for x in trip], None)
        st_loss.backward()
        torch.nn.utils.clip_grad_norm_(st.parameters(), 1.0)
        st_opt.step()
        st_sched.step()
        theirs.append(time.perf_counter() - t)
        losses[0].append(float(loss) / n)
        losses[1].append(float(st_loss))
        log(f"  step {step + 1}/{total}: ragtune {ours[-1]:.1f} s (loss {losses[0][-1]:.3f}), "
            f"sentence-transformers {theirs[-1]:.1f} s (loss {losses[1][-1]:.3f})")
    tr.encoder.model.eval()
    dense.reencode(passages)
    res["ragtune_tied"] = {"steps": total, "step_s": ours, "median_step_s": statistics.median(ours),
                           "loss_first": losses[0][0], "loss_last": losses[0][-1],
                           "after": ndcg(dense, passages, queries, test)}
    log(f"ragtune tied: {res['ragtune_tied']['after']}")
    save()
    st_enc = Encoder("minilm")
    st_enc.model.load_state_dict(st[0].auto_model.state_dict())
    st_enc.model.eval()
    dense.encoder = st_enc
    dense.reencode(passages)
    res["st_mnrl"] = {"steps": total, "step_s": theirs, "median_step_s": statistics.median(theirs),
                      "loss_first": losses[1][0], "loss_last": losses[1][-1],
                      "after": ndcg(dense, passages, queries, test)}
    res["step_time_ratio_st"] = res["ragtune_tied"]["median_step_s"] / res["st_mnrl"]["median_step_s"]
    log(f"sentence-transformers: {res['st_mnrl']['after']}; step time ratio {res['step_time_ratio_st']:.2f}")
    save()


if __name__ == "__main__":
    main()
