"""The fine-tuning loop over a RAG model: generator (full or LoRA), query encoder, optionally document encoder.

``objective`` picks the loss: ``rag`` (-log P(y|q), RAG-Sequence or RAG-Token), or one of two that train the
retriever alone: ``contrastive`` (DPR: each question's positive against the batch's other positives and BM25
hard negatives) and ``lm-supervised`` (KL from p(z|q) over the top k to the frozen generator's preference).

One optimiser step consumes ``batch_size * grad_accum`` examples. Each epoch's order is a permutation seeded by
``seed + epoch``, so the global step alone fixes the data position and a resumed run replays exactly the
batches an uninterrupted one would. Under ``torchrun`` every rank takes a strided share of each micro-batch;
losses are sums divided by the *global* example count, so the all-reduced gradient equals the single-process
one whatever the shares' sizes.

Retrieval runs without gradient; the query encoder learns through f(q, z) = E_q(q) . d_z with d_z taken from
the frozen index (``hits.vectors``), or re-embedded with gradient when the document encoder trains, in which
case the whole index is re-encoded every ``reindex_every`` steps so retrieval follows the new encoder; the
checkpoint then keeps the live index and the saved model an index encoded by the final document encoder.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ragtune.config import TrainingConfig
from ragtune.errors import RagtuneError
from ragtune.evaluation.metrics import exact_match, f1_score, normalize_answer
from ragtune.rag.marginals import doc_log_prior
from ragtune.retrieval.base import EMPTY_ID, Hits
from ragtune.training import checkpoint as ckpt
from ragtune.training.data import QAExample
from ragtune.training.distributed import (DistInfo, all_reduce_grads, all_sum, barrier, broadcast_object, gather_objects,
                                         init_distributed, shard)
from ragtune.training import negatives as neg
from ragtune.training.losses import in_batch_contrastive, lm_supervised_kl, rag_sequence_nll, rag_token_nll


METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"
RAG_JSON = "ragtune.json"
DENSE_INDEX_DIR = "dense_index"  # re-encoded passage vectors, when the document encoder trained


@dataclass
class TrainResult:
    steps: int
    losses: list[float]  # one per optimiser step of this run (after a resume: the steps it ran)
    best: dict[str, float] | None
    evals: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    examples: int = 0


# -- pieces that touch the RAG model ------------------------------------------------------------------------

def passages_for(store, ids: np.ndarray) -> list[list[Any]]:
    """Passages of an (n, k) id array; ``None`` at empty slots."""
    flat = [int(i) for i in ids.reshape(-1)]
    real = [i for i in flat if i != EMPTY_ID]
    got = dict(zip(real, store.get(real))) if real else {}
    k = ids.shape[1]
    return [[got.get(i) if i != EMPTY_ID else None for i in flat[r * k : (r + 1) * k]] for r in range(ids.shape[0])]


def recall_hits(hits: Hits, examples: Sequence[QAExample], passages: list[list[Any]], k: int) -> list[float]:
    """Per-question hit@k against the best evidence a row has: positive ids, else positive texts, else answers."""
    out = []
    for row, ex, ps in zip(hits.ids, examples, passages):
        top = [p for i, p in zip(row[:k], ps[:k]) if i != EMPTY_ID and p is not None]
        if ex.positive_ids:
            hit = any(p.id in set(ex.positive_ids) for p in top)
        elif ex.positive_texts:
            pos = [" ".join(t.split()) for t in ex.positive_texts]
            hit = any(" ".join(p.text.split()) in t or t in " ".join(p.text.split()) for p in top for t in pos)
        else:
            golds = [normalize_answer(a) for a in ex.answers]
            hit = any(g and g in normalize_answer(p.text) for p in top for g in golds)
        out.append(float(hit))
    return out


def linear_warmup_decay(warmup: int, total: int, delay: int = 0) -> Callable[[int], float]:
    """LR multiplier: 0 for ``delay`` steps, then linear warm-up over ``warmup`` steps and linear decay to 0 at
    ``total`` (transformers' ``get_linear_schedule_with_warmup``, shifted by ``delay``)."""

    def f(step: int) -> float:
        if step < delay:
            return 0.0
        s, span = step - delay, max(1, total - delay)
        if s < warmup:
            return s / max(1, warmup)
        return max(0.0, (span - s) / max(1, span - warmup))

    return f


class Trainer:
    """Fine-tunes ``rag`` (a ``ragtune.rag.RAG`` over a dense retriever) on question-answer rows.

    ``rag`` needs ``retriever`` (a ``DenseRetriever``: ``encoder``, ``search(..., return_vectors=True)``),
    ``generator`` (``build_prompt``, ``token_logprobs``, ``generate``, ``model``) and ``store``.
    ``answer_fn(questions) -> answers`` decides how dev answers are produced; by default ``rag.ask_batch``.
    ``retriever_delay`` holds the encoder's LR at 0 for the first steps (see ``linear_warmup_decay``).
    ``negatives`` is the retriever whose top passages are the contrastive objective's hard negatives (BM25).
    """

    def __init__(
        self,
        rag: Any,
        train: Sequence[QAExample],
        dev: Sequence[QAExample] | None,
        config: TrainingConfig,
        out_dir: str | Path,
        *,
        k: int | None = None,
        doc_temperature: float | None = None,
        index_dir: str | Path | None = None,
        recall_k: Sequence[int] = (1, 5),
        answer_fn: Callable[[list[str]], list[str]] | None = None,
        progress: bool = True,
        dist_info: DistInfo | None = None,
        retriever_delay: int = 0,
        negatives: Any = None,
    ) -> None:
        self.rag, self.cfg = rag, config
        self.train_rows, self.dev_rows = list(train), list(dev or [])
        self.out = Path(out_dir)
        self.k = k or getattr(rag, "k", 5)
        self.doc_temperature = doc_temperature if doc_temperature is not None else getattr(rag, "doc_temperature", 1.0)
        self.index_dir = index_dir
        self.recall_k = tuple(recall_k)
        self.answer_fn = answer_fn
        self.progress = progress
        # The retriever's LR stays 0 for this many steps: while the generator still ignores its passages,
        # P(y|q,z) carries no information about z and the retriever's gradient is noise that erodes its ranking.
        self.retriever_delay = retriever_delay
        self.info = dist_info or init_distributed(config.device)
        if not self.train_rows:
            raise RagtuneError("no training examples")
        self.retriever, self.generator, self.store = rag.retriever, rag.generator, rag.store
        if (config.train_query_encoder or config.train_doc_encoder) and not hasattr(self.retriever, "encoder"):
            raise RagtuneError("training the retriever needs a dense retriever; use --freeze query-encoder with BM25")
        self.retriever_only = config.objective != "rag"
        if self.retriever_only and not (config.train_query_encoder or config.train_doc_encoder):
            raise RagtuneError(f"the {config.objective} objective trains the retriever, but both encoders are frozen")
        self.negatives = negatives
        self._index_stale = False  # True once the document encoder has changed since the index was encoded
        if config.objective == "contrastive":
            if config.hard_negatives > 0 and negatives is None:
                raise RagtuneError("hard negatives need a BM25 retriever: add one to the index (`ragtune index ... "
                                   "--retriever bm25`) or set training.hard_negatives = 0")
            lacking = sum(not (e.positive_ids or e.positive_texts) for e in self.train_rows)
            if lacking:
                raise RagtuneError(f"{lacking} of {len(self.train_rows)} training rows have no positive_ids or "
                                   "positive_texts; the contrastive objective needs a positive passage per question")
        elif config.objective == "lm-supervised" and any(not e.answers for e in self.train_rows):
            raise RagtuneError("the lm-supervised objective scores each question's answer: every row needs answers")
        self._setup_modules()

    # -- setup ---------------------------------------------------------------------------------------------

    def _setup_modules(self) -> None:
        cfg = self.cfg
        ckpt.seed_everything(cfg.seed)
        self.modules: dict[str, torch.nn.Module] = {}
        self.train_generator = cfg.train_generator and not self.retriever_only
        if cfg.objective != "contrastive":  # the contrastive objective never loads the generator
            gen_model = self.generator.model
            if self.train_generator and cfg.lora:
                gen_model = self.generator.add_lora(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
            for n, p in gen_model.named_parameters():
                p.requires_grad_(self.train_generator and ("lora_" in n if cfg.lora else True))
            if self.retriever_only:
                gen_model.eval()  # a frozen judge: no dropout in its scores
            else:
                self.modules["generator"] = gen_model
        self.encoder = self.doc_encoder = getattr(self.retriever, "encoder", None)
        if self.encoder is not None:
            # One encoder serves queries and the index's passages. When both sides train they stay tied (the
            # index is re-encoded with the same weights); when only the passage side trains it gets its own copy,
            # or the frozen query side would move with it; when only the query side trains, the passages are
            # frozen data (the index vectors).
            if cfg.train_doc_encoder and not cfg.train_query_encoder:
                self.doc_encoder = copy.deepcopy(self.encoder)
            for p in self.encoder.model.parameters():
                p.requires_grad_(cfg.train_query_encoder)
            if cfg.train_query_encoder:
                self.modules["encoder"] = self.encoder.model
            if self.doc_encoder is not self.encoder:
                for p in self.doc_encoder.model.parameters():
                    p.requires_grad_(True)
                self.modules["doc_encoder"] = self.doc_encoder.model
        gen = self.modules.get("generator")
        self.params_gen = [p for p in gen.parameters() if p.requires_grad] if gen is not None else []
        self.params_enc = [p for name in ("encoder", "doc_encoder") if name in self.modules
                           for p in self.modules[name].parameters()]
        if not self.params_gen and not self.params_enc:
            raise RagtuneError("nothing to train: every part is frozen")

    def _optimizer(self, total_steps: int):
        cfg = self.cfg
        groups, lambdas = [], []
        warmup = round(cfg.warmup_ratio * total_steps)
        if self.params_gen:
            groups.append({"params": self.params_gen, "lr": cfg.lr})
            lambdas.append(linear_warmup_decay(warmup, total_steps))
        if self.params_enc:
            groups.append({"params": self.params_enc, "lr": cfg.encoder_lr})
            d = min(self.retriever_delay, total_steps - 1)
            lambdas.append(linear_warmup_decay(round(cfg.warmup_ratio * (total_steps - d)), total_steps, delay=d))
        opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambdas)

    # -- the schedule of examples --------------------------------------------------------------------------

    @property
    def examples_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.train_rows) // self.examples_per_step)

    @property
    def total_steps(self) -> int:
        if self.cfg.max_steps is not None:
            return self.cfg.max_steps
        return max(1, math.ceil(self.cfg.epochs * self.steps_per_epoch))

    def step_examples(self, step: int) -> list[list[QAExample]]:
        """The global micro-batches of optimiser step ``step``: a pure function of (seed, step)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        g = torch.Generator().manual_seed(self.cfg.seed + epoch)
        order = torch.randperm(len(self.train_rows), generator=g).tolist()
        n = self.examples_per_step
        chunk = order[pos * n : (pos + 1) * n] or order[:n]
        b = self.cfg.batch_size
        return [[self.train_rows[i] for i in chunk[j : j + b]] for j in range(0, len(chunk), b)]

    # -- the loss ------------------------------------------------------------------------------------------

    def _autocast(self):
        prec, dev = self.cfg.precision, self.cfg.device
        if prec == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if prec == "bf16" else torch.float16
        return torch.autocast(device_type="cuda" if dev.startswith("cuda") else "cpu", dtype=dtype)

    def doc_scores(self, questions: list[str], hits: Hits, passages: list[list[Any]]) -> torch.Tensor:
        """f(q, z) for the retrieved passages, with gradient where an encoder trains."""
        cfg = self.cfg
        if not (cfg.train_query_encoder or cfg.train_doc_encoder) or self.encoder is None:
            return torch.from_numpy(np.asarray(hits.scores, dtype=np.float32)).to(cfg.device)
        q = self._embed_queries(questions)
        if cfg.train_doc_encoder:
            flat = [p.indexed_text if p is not None else "" for row in passages for p in row]
            d = self._embed_passages(flat).view(len(questions), hits.k, -1)
        else:
            if hits.vectors is None:
                raise RagtuneError("the retriever did not return passage vectors; a dense retriever is needed")
            d = torch.from_numpy(np.asarray(hits.vectors, dtype=np.float32)).to(q.device)
        return torch.einsum("bd,bkd->bk", q.float(), d.float())

    def _embed_queries(self, questions: list[str]) -> torch.Tensor:
        if self.cfg.train_query_encoder:
            self.encoder.model.train()
            return self.encoder.embed(questions, kind="query")
        with torch.no_grad():
            return self.encoder.embed(questions, kind="query")

    def _embed_passages(self, texts: list[str]) -> torch.Tensor:
        """Passage vectors with gradient, from the document encoder (which trains whenever this is called)."""
        self.doc_encoder.model.train()
        return self.doc_encoder.embed(texts, kind="passage")

    def _candidate_vectors(self, cands: list[neg.Candidate], device: Any) -> torch.Tensor:
        """(C, d) vectors of contrastive candidates: re-embedded with gradient when the document encoder trains,
        else the index's stored vectors (a positive given only as text is encoded without gradient)."""
        if self.cfg.train_doc_encoder:
            return self._embed_passages([c.text for c in cands])
        out = torch.from_numpy(self.retriever.passage_vectors(
            np.array([c.id if c.id is not None else EMPTY_ID for c in cands], dtype=np.int64))).to(device)
        texts = [i for i, c in enumerate(cands) if c.id is None]
        if texts:
            with torch.no_grad():
                self.doc_encoder.model.eval()
                out[texts] = self.doc_encoder.embed([cands[i].text for i in texts], kind="passage").to(out.dtype)
        return out

    def batch_loss(self, batch: Sequence[QAExample], mode: str | None = None) -> tuple[torch.Tensor, int]:
        """Summed loss of a (local) micro-batch and its example count."""
        if not batch:
            return torch.zeros(()), 0
        if self.cfg.objective == "contrastive":
            return self._contrastive_loss(batch), len(batch)
        hits, passages = self._retrieve([e.question for e in batch])
        if self.cfg.objective == "lm-supervised":
            return self._lm_supervised_loss(batch, hits, passages), len(batch)
        return self._rag_loss(batch, hits, passages, mode or self.cfg.mode), len(batch)

    def _retrieve(self, questions: list[str]) -> tuple[Hits, list[list[Any]]]:
        if self.encoder is not None:
            self.encoder.model.eval()  # retrieval itself is deterministic: no dropout in the search pass
        with torch.no_grad():
            hits = self.retriever.search(questions, self.k, return_vectors=True) if self.encoder is not None \
                else self.retriever.search(questions, self.k)
        return hits, passages_for(self.store, hits.ids)

    def _prior(self, questions: list[str], hits: Hits, passages: list[list[Any]]) -> torch.Tensor:
        """log p(z|q) (B, K) over the hits, with gradient into whichever encoder trains."""
        scores = self.doc_scores(questions, hits, passages)
        valid = torch.from_numpy(hits.ids != EMPTY_ID).to(scores.device)
        return doc_log_prior(scores.float(), self.doc_temperature, valid)

    def _answer_logprobs(self, batch: Sequence[QAExample], passages: list[list[Any]], vocab_mean: bool = False):
        """``Generator.token_logprobs`` of each question's first answer under each of its passages alone (B*K rows)."""
        prompts = [self.generator.build_prompt(e.question, [p] if p is not None else [])
                   for e, row in zip(batch, passages) for p in row]
        targets = [e.answers[0] for e, row in zip(batch, passages) for _ in row]
        return self.generator.token_logprobs(prompts, targets, vocab_mean=vocab_mean)

    def _rag_loss(self, batch: Sequence[QAExample], hits: Hits, passages: list[list[Any]], mode: str) -> torch.Tensor:
        cfg = self.cfg
        with self._autocast():
            doc_logp = self._prior([e.question for e in batch], hits, passages)
            scored = self._answer_logprobs(batch, passages, vocab_mean=cfg.label_smoothing > 0)
        B, K = len(batch), hits.k
        tok_logp = scored[0].float().view(B, K, -1)
        mask = scored[1].view(B, K, -1)[:, 0]
        smooth = scored[2].float().view(B, K, -1) if cfg.label_smoothing > 0 else None
        loss_fn = rag_sequence_nll if mode == "rag-sequence" else rag_token_nll
        return loss_fn(doc_logp, tok_logp, mask.to(tok_logp.device), label_smoothing=cfg.label_smoothing,
                       length_normalize=cfg.length_normalize, reduction="sum", smooth_logp=smooth)

    def _lm_supervised_loss(self, batch: Sequence[QAExample], hits: Hits, passages: list[list[Any]]) -> torch.Tensor:
        """KL(softmax(log P(y|q,z) / tau) || p(z|q)) over the top k: the retriever learns the generator's ranking."""
        with self._autocast():
            doc_logp = self._prior([e.question for e in batch], hits, passages)
            with torch.no_grad():
                tok_logp, mask = self._answer_logprobs(batch, passages)[:2]
        mask = mask.to(tok_logp.device).view(len(batch), hits.k, -1).to(torch.float32)
        ll = (tok_logp.float().view(len(batch), hits.k, -1) * mask).sum(-1)
        if self.cfg.length_normalize:
            ll = ll / mask.sum(-1).clamp_min(1.0)
        return lm_supervised_kl(doc_logp, ll, tau=self.cfg.lm_temperature, reduction="sum")

    def _contrastive_loss(self, batch: Sequence[QAExample]) -> torch.Tensor:
        """DPR: each question against its positive, the batch's other positives and BM25 hard negatives, with
        candidates that also answer a question masked out of its row."""
        cfg = self.cfg
        questions = [e.question for e in batch]
        pos = neg.positives(batch, self.store)
        hard: list[neg.Candidate] = []
        if cfg.hard_negatives > 0:
            depth = cfg.hard_negatives + max(len(e.positive_ids) for e in batch) + 10
            ranked = passages_for(self.store, self.negatives.search(questions, depth).ids)
            hard = [c for row in neg.hard_negatives(batch, ranked, cfg.hard_negatives) for c in row]
        cands = pos + hard
        exclude = torch.from_numpy(neg.false_negatives(batch, cands))
        with self._autocast():
            q = self._embed_queries(questions)
            c = self._candidate_vectors(cands, q.device)
        q, c = q.float(), c.float()
        return in_batch_contrastive(q, c[: len(pos)], c[len(pos):] if hard else None,
                                    temperature=cfg.contrastive_temperature, reduction="sum", exclude=exclude)

    # -- evaluation ----------------------------------------------------------------------------------------

    def _answers(self, questions: list[str]) -> list[str]:
        if self.answer_fn is not None:
            return self.answer_fn(questions)
        return [o.answer for o in self.rag.ask_batch(questions)]

    @torch.no_grad()
    def evaluate(self, rows: Sequence[QAExample] | None = None, batch_size: int = 32) -> dict[str, float]:
        """EM, F1 and Recall@k on the dev rows (each rank scores a share; the sums are all-reduced).
        The retriever-only objectives skip EM and F1: they do not change the generator."""
        rows = list(rows if rows is not None else self.dev_rows)
        mine = shard(rows, self.info)
        for m in self.modules.values():
            m.eval()
        em = f1 = 0.0
        rec = dict.fromkeys(self.recall_k, 0.0)
        kmax = max(self.recall_k)
        for i in range(0, len(mine), batch_size):
            chunk = mine[i : i + batch_size]
            qs = [e.question for e in chunk]
            if not self.retriever_only:
                for pred, ex in zip(self._answers(qs), chunk):
                    em += exact_match(pred, ex.answers)
                    f1 += f1_score(pred, ex.answers)
            hits = self.retriever.search(qs, kmax)
            ps = passages_for(self.store, hits.ids)
            for k in self.recall_k:
                rec[k] += sum(recall_hits(hits, chunk, ps, k))
        n = max(len(rows), 1)
        out = {} if self.retriever_only else {"em": all_sum(em, self.info) / n, "f1": all_sum(f1, self.info) / n}
        for k in self.recall_k:
            out[f"recall@{k}"] = all_sum(rec[k], self.info) / n
        return out

    def _rank_key(self, metrics: dict[str, float]) -> tuple[float, ...]:
        """What "best checkpoint" means: EM then F1, or Recall@k (smallest k first) when only the retriever trains."""
        if self.retriever_only:
            return tuple(metrics[f"recall@{k}"] for k in sorted(self.recall_k))
        return metrics["em"], metrics["f1"]

    # -- saving --------------------------------------------------------------------------------------------

    def save_model(self, path: str | Path | None = None) -> Path:
        """A directory ``RAG.from_pretrained`` loads (rank 0 only): generator/ (a reference to the untouched model
        when only the retriever trained), query_encoder/, dense_index/ (passages encoded by the trained document
        encoder, when it trained) and ragtune.json."""
        path = Path(path or self.out)
        if not self.info.is_main:
            return path
        from ragtune.training.checkpoint import atomic_dir

        path.mkdir(parents=True, exist_ok=True)
        with atomic_dir(path / "generator") as tmp:
            self._save_generator(tmp)
        if self.encoder is not None:
            with atomic_dir(path / "query_encoder") as tmp:
                self.encoder.save(tmp)
        if self.cfg.train_doc_encoder:
            # The live index lags the document encoder by up to reindex_every steps; the saved one does not
            # (after a re-encoding step the live one is already current and is saved as it is).
            index = self.retriever.index
            if self._index_stale:
                self.doc_encoder.model.eval()
                with torch.no_grad():
                    index = self.retriever.encoded_index(self._all_passages(), self.doc_encoder)
            with atomic_dir(path / DENSE_INDEX_DIR) as tmp:
                index.save(tmp)
        meta = {
            "index": str(Path(self.index_dir).resolve()) if self.index_dir else None,
            "rag": {"mode": self.cfg.mode, "k": self.k, "doc_temperature": self.doc_temperature,
                    "retriever": getattr(self.retriever, "kind", "dense")},
            "training": self.cfg.model_dump(),
        }
        tmpf = path / (RAG_JSON + ".tmp")
        tmpf.write_text(json.dumps(meta, indent=2))
        tmpf.replace(path / RAG_JSON)
        return path

    def _save_generator(self, path: Path) -> None:
        # Generator.save writes full weights, or only the LoRA adapter (whose config names the base model)
        # when the model is a PeftModel; Generator.load handles both. An untrained generator is only named.
        self.generator.save(path, weights=self.train_generator)

    def _checkpoint_state(self, step: int, opt, sched, scaler, best, bad_evals) -> dict[str, Any]:
        return {
            "step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": gather_objects(ckpt.rng_state(), self.info),
            "best": best, "bad_evals": bad_evals, "world_size": self.info.world_size,
            "config": self.cfg.model_dump(),
        }

    def _log(self, row: dict[str, Any]) -> None:
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    # -- the loop ------------------------------------------------------------------------------------------

    def train(self, resume: bool = False, stop_after: int | None = None, max_seconds: float | None = None) -> TrainResult:
        """Run to ``total_steps`` (or ``stop_after`` steps, for tests of interrupted runs), or until ``max_seconds``
        of training have passed; a run stopped by time evaluates and checkpoints like a last step."""
        cfg, info = self.cfg, self.info
        total = self.total_steps
        opt, sched = self._optimizer(total)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" and cfg.device.startswith("cuda") else None
        step, best, bad_evals = 0, None, 0
        ckpt.seed_everything(cfg.seed + info.rank)
        if resume:
            state = ckpt.load_checkpoint(self.out / CHECKPOINT_DIR, self.modules)
            if state["world_size"] != info.world_size:
                raise RagtuneError(f"checkpoint was written by {state['world_size']} processes, resuming with {info.world_size}")
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if scaler is not None and state["scaler"]:
                scaler.load_state_dict(state["scaler"])
            ckpt.set_rng_state(state["rng"][info.rank])
            step, best, bad_evals = state["step"], state["best"], state["bad_evals"]
            if cfg.train_doc_encoder:
                # the index exactly as the interrupted run had it (re-encoded at its last reindex step)
                from ragtune.retrieval.dense.vector_index import VectorIndex

                self.retriever.index = VectorIndex.load(self.out / CHECKPOINT_DIR / DENSE_INDEX_DIR)
                self._index_stale = True  # it may predate the restored encoder's last steps
        params = self.params_gen + self.params_enc
        losses: list[float] = []
        evals: list[dict[str, Any]] = []
        bar = None
        if self.progress and info.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=step, desc="train", dynamic_ncols=True)
        t0, n_examples, stopped, timed_out = time.perf_counter(), 0, False, False
        end = total if stop_after is None else min(total, step + stop_after)
        while step < end:
            for m in self.modules.values():
                m.train()
            micro = self.step_examples(step)
            global_n = sum(len(b) for b in micro)
            loss_sum = 0.0
            opt.zero_grad(set_to_none=True)
            for batch in micro:
                loss, _ = self.batch_loss(shard(batch, info))
                if loss.requires_grad:
                    scaled = loss / global_n
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                loss_sum += float(loss.detach())
            all_reduce_grads(params, info)
            if scaler is not None:
                scaler.unscale_(opt)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)) if cfg.max_grad_norm > 0 else float("nan")
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            self._index_stale = cfg.train_doc_encoder  # the document encoder moved; the index has not yet
            step += 1
            n_examples += global_n
            if max_seconds is not None and step < end:
                # rank 0's clock decides, so every rank stops at the same step
                if broadcast_object(time.perf_counter() - t0 >= max_seconds, info):
                    end, timed_out = step, True
            mean_loss = all_sum(loss_sum, info) / global_n
            losses.append(mean_loss)
            lr = sched.get_last_lr()[0]
            self._log({"step": step, "loss": mean_loss, "lr": lr, "grad_norm": grad_norm,
                       "epoch": step / self.steps_per_epoch})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
            if cfg.train_doc_encoder and cfg.reindex_every > 0 and step % cfg.reindex_every == 0:
                self._reencode()
            is_last = step == total or timed_out
            if self.dev_rows and (step % cfg.eval_every == 0 or is_last):
                metrics = self.evaluate()
                evals.append({"step": step, **metrics})
                self._log({"step": step, "eval": metrics})
                if best is None or self._rank_key(metrics) > self._rank_key(best):
                    best, bad_evals = {"step": step, **metrics}, 0
                    self.save_model()
                else:
                    bad_evals += 1
                if cfg.early_stopping_patience is not None and bad_evals >= cfg.early_stopping_patience:
                    stopped = True
            if step % cfg.save_every == 0 or is_last or stopped or step == end:
                state = self._checkpoint_state(step, opt, sched, scaler, best, bad_evals)
                if info.is_main:
                    ckpt.save_checkpoint(self.out / CHECKPOINT_DIR, self.modules, state, extra=self._save_live_index)
                barrier(info)
            if stopped:
                break
        if bar is not None:
            bar.close()
        if not self.dev_rows and (step == total or timed_out):
            self.save_model()
        barrier(info)
        return TrainResult(step, losses, best, evals, stopped, time.perf_counter() - t0, n_examples)

    def _save_live_index(self, directory: Path) -> None:
        if self.cfg.train_doc_encoder:
            self.retriever.index.save(directory / DENSE_INDEX_DIR)

    def _reencode(self) -> None:
        """Refresh every passage vector in the index with the current document encoder."""
        reencode = getattr(self.retriever, "reencode", None)
        if reencode is None:
            raise RagtuneError("this retriever cannot re-encode its index; keep the document encoder frozen")
        self.doc_encoder.model.eval()
        with torch.no_grad():
            reencode(self._all_passages(), encoder=self.doc_encoder)
        self._index_stale = False

    def _all_passages(self) -> list[Any]:
        return [p for batch in self.store.iter_passages() for p in batch]
