"""Teaching the retriever on real data (issue 17, section 3): CMRC 2018 (Chinese), where the English MiniLM has room
to learn. Recall@1/5/20 of the query encoder on held-out questions before training, and after each of the three
ways ragtune trains it, every run starting from the same packaged MiniLM:

* ``e2e``: end-to-end RAG-Sequence (generator LoRA and query encoder, the encoder learning only through the prior
  p(z|q) of the marginal likelihood); the generator's character-level EM/F1 before and after;
* ``contrastive``: the retriever alone, DPR (gold paragraph positive, in-batch and one BM25 hard negative);
* ``lm-supervised``: the retriever alone, KL from p(z|q) over the top k to the frozen generator's preference.

Knowledge base: the 256 paragraphs of ``../shared/datasets/cmrc2018/cmrc2018_trial.json``, cut into passages by
ragtune's own chunker (``[corpus]`` defaults: 100 words, CJK 150 characters, 20 overlap; a whole paragraph of
~600 characters made one end-to-end step take 2 minutes), encoded once by MiniLM and kept frozen (the RAG setting:
only the query side trains). Recall@k counts a question as found when one of the top k passages comes from its
paragraph; training positives are the paragraph's passages that hold the answer. Split by paragraph, seeded:
``--test-share`` of the paragraphs (default 0.2) hold the test questions, the rest the training ones; no
paragraph has questions on both sides. Each run is capped in wall time (``--*-minutes``).

    python benchmarks/bench_cmrc_retriever.py                               # -> results/cmrc_retriever.json
    python benchmarks/bench_cmrc_retriever.py --runs contrastive --contrastive-minutes 1 --gen-n 0   # quick
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import log, peak_rss_mb  # noqa: E402
from shared_data import DATASETS, MemoryStore  # noqa: E402

from ragtune.config import CorpusConfig, DenseConfig, TrainingConfig  # noqa: E402
from ragtune.corpus.chunking import chunk_documents  # noqa: E402
from ragtune.corpus.squad import QARecord, load_squad  # noqa: E402
from ragtune.corpus.types import Passage  # noqa: E402
from ragtune.evaluation.qa import evaluate_qa  # noqa: E402
from ragtune.generation import Generator  # noqa: E402
from ragtune.rag.model import RAG  # noqa: E402
from ragtune.retrieval.dense import DenseRetriever  # noqa: E402
from ragtune.retrieval.sparse import BM25Retriever  # noqa: E402
from ragtune.training.checkpoint import seed_everything  # noqa: E402
from ragtune.training.trainer import Trainer  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "cmrc_retriever.json"
WORK = Path(__file__).resolve().parent / ".work" / "cmrc"
RUNS = ("contrastive", "lm-supervised", "e2e")


def paragraph_split(data, test_share: float, seed: int):
    """Train and test questions, split by paragraph (seeded): a paragraph's questions are all on one side."""
    ids = sorted({d.id for d in data.documents})
    random.Random(seed).shuffle(ids)
    test_ids = set(ids[: max(1, round(test_share * len(ids)))])
    train = [q for q in data.questions if q.positive_doc_ids[0] not in test_ids]
    test = [q for q in data.questions if q.positive_doc_ids[0] in test_ids]
    return train, test


def recall(retriever, rows: list[QARecord], doc_of: dict[int, str], ks=(1, 5, 20)) -> dict[str, float]:
    """Share of questions with a passage of their own paragraph in the top k, in percent."""
    model = getattr(getattr(retriever, "encoder", None), "model", None)
    if model is not None:
        model.eval()
    with torch.no_grad():
        hits = retriever.search([r.question for r in rows], max(ks))
    found = np.array([[doc_of.get(int(i)) == r.positive_doc_ids[0] for i in row] for row, r in zip(hits.ids, rows)])
    return {f"recall@{k}": round(100 * float(found[:, :k].any(1).mean()), 2) for k in ks}


def generator_scores(rag: RAG, rows: list[QARecord], k: int, max_new_tokens: int) -> dict:
    rag.generator.model.eval()
    t = time.perf_counter()
    rep = evaluate_qa(rag, rows, mode="rag-sequence", k=k, batch_size=4, max_new_tokens=max_new_tokens)
    return {"em": round(100 * rep.em, 2), "f1": round(100 * rep.f1, 2), "n": len(rows),
            "seconds_per_question": round((time.perf_counter() - t) / max(len(rows), 1), 2),
            "examples": rep.predictions[:3]}


def train(rag: RAG, rows: list[QARecord], cfg: TrainingConfig, minutes: float, label: str, negatives=None) -> dict:
    seed_everything(cfg.seed)  # LoRA's adapters are initialised from the global RNG
    trainer = Trainer(rag, rows, None, cfg, WORK / label, progress=False, negatives=negatives)
    res = trainer.train(max_seconds=minutes * 60)
    log(f"{label}: {res.steps} steps, {res.examples} examples in {res.seconds / 60:.1f} min; loss "
        f"{res.losses[0]:.3f} -> {np.mean(res.losses[-10:]):.3f}")
    return {"steps": res.steps, "examples": res.examples, "minutes": round(res.seconds / 60, 2),
            "loss_first": round(res.losses[0], 4), "loss_last_10_mean": round(float(np.mean(res.losses[-10:])), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=list(RUNS), choices=RUNS)
    ap.add_argument("--test-share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=3, help="Passages per question in lm-supervised and e2e training.")
    ap.add_argument("--doc-temperature", type=float, default=1.0, help="The prior's temperature: softmax(f(q, z) / T).")
    ap.add_argument("--e2e-checkpointing", choices=["off", "auto"], default="off",
                    help="gradient checkpointing end to end: off (faster; the first runs) or the library default")
    ap.add_argument("--encoder-lr", type=float, default=5e-5)
    ap.add_argument("--e2e-encoder-lr", type=float, default=1e-5,
                    help="The query encoder's learning rate end to end: the prior's gradient is noisy while the generator "
                         "is untrained, and Adam's steps do not shrink with it (5e-5 lost 7 points of recall@1 in 4 steps).")
    ap.add_argument("--lr", type=float, default=3e-4, help="The generator's LoRA learning rate (e2e).")
    ap.add_argument("--e2e-batch-size", type=int, default=4)
    ap.add_argument("--e2e-minutes", type=float, default=40.0)
    ap.add_argument("--contrastive-minutes", type=float, default=5.0)
    ap.add_argument("--lm-minutes", type=float, default=10.0)
    ap.add_argument("--gen-n", type=int, default=40, help="Test questions for the generator's EM/F1 (0: skip).")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load_squad(DATASETS / "cmrc2018" / "cmrc2018_trial.json")
    passages = [dataclasses.replace(p, id=i + 1) for i, p in enumerate(chunk_documents(data.documents, CorpusConfig()))]
    doc_of = {p.id: p.doc_id for p in passages}
    chunks: dict[str, list[Passage]] = {}
    for p in passages:
        chunks.setdefault(p.doc_id, []).append(p)
    train_q, test_q = paragraph_split(data, args.test_share, args.seed)

    def as_row(q) -> QARecord:
        mine = chunks[q.positive_doc_ids[0]]
        holding = [p.id for p in mine if any(a and a in p.text for a in q.answers)] or [p.id for p in mine]
        return QARecord(q.question, list(dict.fromkeys(q.answers)), holding, positive_doc_ids=list(q.positive_doc_ids))

    train_rows = [as_row(q) for q in train_q if q.question.strip()]
    test_rows = [as_row(q) for q in test_q if q.question.strip()]
    random.Random(args.seed).shuffle(train_rows)
    gen_rows = test_rows[: args.gen_n]
    res: dict = {"command": "python benchmarks/bench_cmrc_retriever.py " + " ".join(sys.argv[1:]),
                 "machine": f"{platform.machine()}, {args.threads} torch threads, {torch.get_num_threads()} in use",
                 "kb_paragraphs": len(data.documents), "kb_passages": len(passages), "train_questions": len(train_rows), "test_questions": len(test_rows),
                 "split": f"by paragraph, test share {args.test_share}, seed {args.seed}", "k": args.k,
                 "doc_temperature": args.doc_temperature,
                 "encoder": "minilm (query side trained, passage vectors frozen)", "generator": "smollm2-135m-instruct"}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")

    log(f"kb={len(data.documents)} paragraphs, {len(passages)} passages, train={len(train_rows)} test={len(test_rows)}")
    retriever = DenseRetriever(DenseConfig(encoder="minilm"))
    retriever.add(passages)
    base = copy.deepcopy(retriever.encoder.model.state_dict())
    store = MemoryStore(passages)
    bm25 = BM25Retriever()
    bm25.add(passages)
    res["recall_bm25"] = recall(bm25, test_rows, doc_of)
    res["recall_before"] = recall(retriever, test_rows, doc_of)
    log(f"recall before {res['recall_before']} (bm25 {res['recall_bm25']})")
    save()

    # runs stop on their time cap; with no warmup and the linear decay spread over 20 epochs, the learning rate is
    # nearly constant over a capped run
    common = dict(encoder_lr=args.encoder_lr, warmup_ratio=0.0, eval_every=10**9, save_every=10**9, seed=args.seed, epochs=20.0)
    for run in args.runs:
        retriever.encoder.model.load_state_dict(base)  # every run starts from the packaged MiniLM
        gen = Generator("smollm2-135m-instruct", max_new_tokens=args.max_new_tokens)
        rag = RAG(retriever, gen, store, mode="rag-sequence", k=args.k, doc_temperature=args.doc_temperature)
        out: dict = {}
        if run == "e2e" and args.gen_n:
            out["generator_before"] = generator_scores(rag, gen_rows, args.k, args.max_new_tokens)
            log(f"generator before: EM {out['generator_before']['em']} F1 {out['generator_before']['f1']}")
        if run == "contrastive":
            cfg = TrainingConfig(objective="contrastive", hard_negatives=1, train_generator=False, batch_size=32, **common)
            out["training"] = train(rag, train_rows, cfg, args.contrastive_minutes, run, negatives=bm25)
        elif run == "lm-supervised":
            cfg = TrainingConfig(objective="lm-supervised", train_generator=False, batch_size=8, **common)
            out["training"] = train(rag, train_rows, cfg, args.lm_minutes, run)
        else:
            cfg = TrainingConfig(objective="rag", mode="rag-sequence", lora=True, lora_r=16, lora_alpha=32, lr=args.lr,
                                 batch_size=args.e2e_batch_size,
                                 gradient_checkpointing=False if args.e2e_checkpointing == "off" else "auto",
                                 **(common | {"encoder_lr": args.e2e_encoder_lr}))
            out["training"] = train(rag, train_rows, cfg, args.e2e_minutes, run)
        out["recall_after"] = recall(retriever, test_rows, doc_of)
        log(f"{run}: recall after {out['recall_after']}")
        if run == "e2e" and args.gen_n:
            out["generator_after"] = generator_scores(rag, gen_rows, args.k, args.max_new_tokens)
            log(f"generator after: EM {out['generator_after']['em']} F1 {out['generator_after']['f1']}")
        out["peak_rss_mb"] = round(peak_rss_mb())
        res[run] = out
        save()
    res["cmrc_recall1_before"] = res["recall_before"]["recall@1"]
    for run, key in (("e2e", "cmrc_recall1_after_e2e"), ("contrastive", "cmrc_recall1_after_contrastive"),
                     ("lm-supervised", "cmrc_recall1_after_lm_supervised")):
        if run in res:
            res[key] = res[run]["recall_after"]["recall@1"]
    save()
    print(json.dumps({k: v for k, v in res.items() if k.startswith("cmrc_")}))


if __name__ == "__main__":
    main()
