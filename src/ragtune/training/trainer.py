"""The fine-tuning loop over a RAG model: generator (full or LoRA), query encoder, optionally document encoder.

``objective`` picks the loss: ``rag`` (-log P(y|q), RAG-Sequence or RAG-Token), or one of two that train the
retriever alone: ``contrastive`` (DPR: each question's positive against the batch's other positives and BM25
hard negatives) and ``lm-supervised`` (KL from p(z|q) over the top k to the frozen generator's preference).

The step alone fixes the data position and the learning rates (``schedule``), so a resumed run replays exactly
the batches an uninterrupted one would. Under ``torchrun`` every rank takes a strided share of each micro-batch;
losses are sums divided by the *global* example count, so the all-reduced gradient equals the single-process
one whatever the shares' sizes.

The losses are ``objectives.Objective``'s, computed through the RAG model. When the document encoder trains,
the whole index is re-encoded every ``reindex_every`` steps so retrieval follows the new encoder; the
checkpoint then keeps the live index and the saved model an index encoded by the final document encoder.

Building a Trainer leaves the process as it was. (Importing ``ragtune.training`` sets one environment variable,
inherited by child processes: it caps oneDNN's kernel cache, ``memory.bound_kernel_cache``, unless the user set
it.) The caller seeds the RNGs (``checkpoint.seed_everything``, which LoRA's initialisation draws from) and
passes ``dist_info`` (``distributed.torch_ddp.init_distributed``).
"""
from __future__ import annotations

import copy
import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ragtune.config import TrainingConfig
from ragtune.errors import RagtuneError
from ragtune.corpus.squad import QARecord
from ragtune.distributed.torch_ddp import (DistInfo, all_reduce_grads, all_sum, barrier, broadcast_object, gather_objects,
                                          shard)
from ragtune.evaluation.matching import recall_hits
from ragtune.evaluation.metrics import exact_match, f1_score
from ragtune.rag.trained import DENSE_INDEX_DIR, dense_part
from ragtune.training import checkpoint as ckpt, memory, schedule
from ragtune.training.objectives import Objective, check_rows

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainResult:
    steps: int
    losses: list[float]  # one per optimiser step of this run (after a resume: the steps it ran)
    best: dict[str, float] | None
    evals: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    examples: int = 0


class Trainer:
    """Fine-tunes ``rag`` (a ``ragtune.rag.RAG``, dense to train its retriever) on question-answer rows.

    ``answer_fn(questions) -> answers`` decides how dev answers are produced; by default ``rag.ask_batch``.
    ``retriever_delay`` holds the encoder's LR at 0 for the first steps (see ``schedule.linear_warmup_decay``).
    ``negatives`` is the retriever whose top passages are the contrastive objective's hard negatives (BM25).
    ``dist_info`` is this process's rank and world (one process by default).
    """

    def __init__(
        self,
        rag: Any,
        train: Sequence[QARecord],
        dev: Sequence[QARecord] | None,
        config: TrainingConfig,
        out_dir: str | Path,
        *,
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
        self.index_dir = index_dir
        self.recall_k = tuple(recall_k)
        self.answer_fn = answer_fn
        self.progress = progress
        # The retriever's LR stays 0 for this many steps: while the generator still ignores its passages,
        # P(y|q,z) carries no information about z and the retriever's gradient is noise that erodes its ranking.
        self.retriever_delay = retriever_delay
        self.info = dist_info or DistInfo()
        check_rows(config, self.train_rows, negatives)
        self.retriever, self.generator, self.store = rag.retriever, rag.generator, rag.store
        self.dense = dense_part(self.retriever)  # the retriever (or hybrid member) whose encoder may train
        if config.train_query_encoder or config.train_doc_encoder:
            if self.dense is None:
                raise RagtuneError("training the retriever needs a dense retriever; use --freeze query-encoder with BM25")
            if config.objective != "contrastive" and "return_vectors" not in inspect.signature(self.retriever.search).parameters:
                raise RagtuneError(f"the {config.objective} objective trains the query encoder through the retriever's "
                                   "scores, which rank fusion hides: use the dense or the rescore retriever")
        self.retriever_only = config.objective != "rag"
        if self.retriever_only and not (config.train_query_encoder or config.train_doc_encoder):
            raise RagtuneError(f"the {config.objective} objective trains the retriever, but both encoders are frozen")
        self._index_stale = False  # True once the document encoder has changed since the index was encoded
        memory.bound_kernel_cache()  # done when ragtune.training was imported; here for a process that unset it since
        self._setup_modules()
        self.checkpointing = memory.apply(self.modules, config)  # {module: gradient checkpointing on}
        self.objective = Objective(rag, config, self.encoder, self.doc_encoder, negatives)
        self.precision = self.objective.precision  # "auto" resolved: what the forward passes compute in

    # -- setup ---------------------------------------------------------------------------------------------

    def _setup_modules(self) -> None:
        cfg = self.cfg
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
        self.encoder = self.doc_encoder = getattr(self.dense, "encoder", None)
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
        return schedule.optimizer(self.params_gen, self.params_enc, self.cfg, total_steps, self.retriever_delay)

    # -- the schedule of examples --------------------------------------------------------------------------

    @property
    def steps_per_epoch(self) -> int:
        return schedule.steps_per_epoch(len(self.train_rows), self.cfg)

    @property
    def total_steps(self) -> int:
        return schedule.total_steps(len(self.train_rows), self.cfg)

    def step_examples(self, step: int) -> list[list[QARecord]]:
        """The global micro-batches of optimiser step ``step``: a pure function of (seed, step)."""
        return [[self.train_rows[i] for i in batch] for batch in schedule.step_batches(len(self.train_rows), self.cfg, step)]

    # -- the loss ------------------------------------------------------------------------------------------

    def batch_loss(self, batch: Sequence[QARecord], mode: str | None = None) -> tuple[torch.Tensor, int]:
        """Summed loss of a (local) micro-batch and its example count."""
        if not batch:
            return torch.zeros(()), 0
        return self.objective.loss(batch, mode), len(batch)

    # -- evaluation ----------------------------------------------------------------------------------------

    def _answers(self, rows: Sequence[QARecord]) -> list[str]:
        questions = [e.question for e in rows]
        if self.answer_fn is not None:
            return self.answer_fn(questions)
        if any(e.history is not None for e in rows):  # chat turns are answered as chat_turn answers them
            return [o.answer for o in self.rag.chat_batch(questions, [e.history or () for e in rows])]
        return [o.answer for o in self.rag.ask_batch(questions)]

    @torch.no_grad()
    def evaluate(self, rows: Sequence[QARecord] | None = None, batch_size: int = 32) -> dict[str, float]:
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
            qs = self.objective.queries(chunk)
            if not self.retriever_only:
                for pred, ex in zip(self._answers(chunk), chunk):
                    em += exact_match(pred, ex.answers)
                    f1 += f1_score(pred, ex.answers)
            hits = self.retriever.search(qs, kmax)
            ps = hits.passages(self.rag.store)
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
        """The trained RAG as ``RAG.save_pretrained`` writes it (rank 0 only): the generator (only named when the
        retriever alone trained), the query encoder, and the passages encoded by the trained document encoder
        when it trained."""
        path = Path(path or self.out)
        if not self.info.is_main:
            return path
        index = None
        if self.cfg.train_doc_encoder:
            # The live index lags the document encoder by up to reindex_every steps; the saved one does not
            # (after a re-encoding step the live one is already current and is saved as it is).
            index = self.dense.index
            if self._index_stale:
                self.doc_encoder.model.eval()
                with torch.no_grad():
                    index = self.dense.encoded_index(self._all_passages(), self.doc_encoder)
        return self.rag.save_pretrained(path, index_dir=self.index_dir, mode=self.cfg.mode, generator_weights=self.train_generator,
                                        dense_index=index, training=self.cfg.model_dump())

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
        scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" and cfg.device.startswith("cuda") else None
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

                self.dense.index = VectorIndex.load(self.out / CHECKPOINT_DIR / DENSE_INDEX_DIR)
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
            memory.release_freed()
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
                       "epoch": step / self.steps_per_epoch, "peak_rss_mb": memory.peak_rss_mb()})
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
            self.dense.index.save(directory / DENSE_INDEX_DIR)

    def _reencode(self) -> None:
        """Refresh every passage vector in the index with the current document encoder."""
        reencode = getattr(self.dense, "reencode", None)
        if reencode is None:
            raise RagtuneError("this retriever cannot re-encode its index; keep the document encoder frozen")
        self.doc_encoder.model.eval()
        with torch.no_grad():
            reencode(self._all_passages(), encoder=self.doc_encoder)
        self._index_stale = False

    def _all_passages(self) -> list[Any]:
        return [p for batch in self.store.iter_passages() for p in batch]
