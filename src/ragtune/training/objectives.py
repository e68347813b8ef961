"""The three training objectives as one loss over a micro-batch, computed through the RAG model.

* ``rag``: -log P(y|q) under RAG-Sequence or RAG-Token, from ``RAG.doc_log_prior`` and ``RAG.passage_logprobs``
  (the terms of ``RAG.loglik``) with label smoothing and length normalisation (``losses.rag_*_nll``).
* ``lm-supervised``: KL from p(z|q) to the frozen generator's preference softmax(log P(y|q,z) / tau).
* ``contrastive``: DPR, each question's positive against the batch's other positives and BM25 hard negatives.

Retrieval runs without gradient; the query encoder learns through f(q, z) = E_q(q) . d_z (+ ``hits.offsets``, a
rescoring hybrid's sparse term) with d_z taken from the frozen index (``hits.vectors``), or re-embedded with
gradient when the document encoder trains.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ragtune.config import TrainingConfig
from ragtune.corpus.squad import QARecord
from ragtune.errors import RagtuneError
from ragtune.rag.trained import dense_part
from ragtune.retrieval.base import EMPTY_ID, Hits
from ragtune.training import negatives as neg, precision
from ragtune.training.losses import in_batch_contrastive, lm_supervised_kl, rag_sequence_nll, rag_token_nll


def check_rows(cfg: TrainingConfig, rows: Sequence[QARecord], negatives: Any) -> None:
    """What each objective needs of the training rows, as one clear error before any model loads."""
    if not rows:
        raise RagtuneError("no training examples")
    if cfg.objective == "contrastive":
        if cfg.hard_negatives > 0 and negatives is None:
            raise RagtuneError("hard negatives need a BM25 retriever: add one to the index (`ragtune index ... "
                               "--retriever bm25`) or set training.hard_negatives = 0")
        lacking = sum(not (e.positive_ids or e.positive_texts) for e in rows)
        if lacking:
            raise RagtuneError(f"{lacking} of {len(rows)} training rows have no positive_ids or "
                               "positive_texts; the contrastive objective needs a positive passage per question")
    elif cfg.objective == "lm-supervised" and any(not e.answers for e in rows):
        raise RagtuneError("the lm-supervised objective scores each question's answer: every row needs answers")


class Objective:
    """``loss(batch)``: the summed loss of a micro-batch under ``cfg.objective``.

    ``encoder`` is the retriever's (query side) encoder, ``doc_encoder`` the passage side's (the same object when
    both sides are tied); ``negatives`` the retriever whose top passages are the contrastive hard negatives.
    """

    def __init__(self, rag: Any, cfg: TrainingConfig, encoder: Any, doc_encoder: Any, negatives: Any = None) -> None:
        self.rag, self.cfg = rag, cfg
        self.encoder, self.doc_encoder, self.negatives = encoder, doc_encoder, negatives
        self.precision = precision.resolve(cfg.precision, cfg.device)  # "auto" decided once, here

    def loss(self, batch: Sequence[QARecord], mode: str | None = None) -> torch.Tensor:
        if self.cfg.objective == "contrastive":
            return self._contrastive(batch)
        queries = self.queries(batch)
        hits, rows = self._retrieve(queries)
        if self.cfg.objective == "lm-supervised":
            return self._lm_supervised(batch, queries, hits, rows)
        return self._rag(batch, queries, hits, rows, mode or self.cfg.mode)

    # -- the three objectives ------------------------------------------------------------------------------

    def queries(self, batch: Sequence[QARecord]) -> list[str]:
        """What each example is retrieved with: its question, or for a chat turn (a row with a history) the query
        ``RAG.turn_queries`` builds, so training scores the passages that answering retrieves."""
        return self.rag.queries([e.question for e in batch], [e.history for e in batch])

    @staticmethod
    def histories(batch: Sequence[QARecord]) -> list[Any] | None:
        """Chat turns' histories for the prompts (None when no row is a chat turn)."""
        return [e.history or () for e in batch] if any(e.history is not None for e in batch) else None

    def _rag(self, batch: Sequence[QARecord], queries: list[str], hits: Hits, rows: list[list[Any]], mode: str) -> torch.Tensor:
        cfg = self.cfg
        questions = [e.question for e in batch]
        with self.autocast():
            doc_logp = self.rag.doc_log_prior(hits, self.doc_scores(queries, hits, rows), rows)
            scored = self.rag.passage_logprobs(questions, [e.answers[0] for e in batch], rows,
                                               vocab_mean=cfg.label_smoothing > 0, max_tokens=cfg.max_pass_tokens,
                                               histories=self.histories(batch))
        loss_fn = rag_sequence_nll if mode == "rag-sequence" else rag_token_nll
        return loss_fn(doc_logp, scored[0], scored[1], label_smoothing=cfg.label_smoothing,
                       length_normalize=cfg.length_normalize, reduction="sum",
                       smooth_logp=scored[2] if cfg.label_smoothing > 0 else None)

    def _lm_supervised(self, batch: Sequence[QARecord], queries: list[str], hits: Hits, rows: list[list[Any]]) -> torch.Tensor:
        """KL(softmax(log P(y|q,z) / tau) || p(z|q)) over the top k: the retriever learns the generator's ranking."""
        questions = [e.question for e in batch]
        with self.autocast():
            doc_logp = self.rag.doc_log_prior(hits, self.doc_scores(queries, hits, rows), rows)
            with torch.no_grad():
                tok_logp, mask = self.rag.passage_logprobs(questions, [e.answers[0] for e in batch], rows,
                                                           max_tokens=self.cfg.max_pass_tokens,
                                                           histories=self.histories(batch))
        mask = mask.to(torch.float32)[:, None]
        ll = (tok_logp * mask).sum(-1)
        if self.cfg.length_normalize:
            ll = ll / mask.sum(-1).clamp_min(1.0)
        return lm_supervised_kl(doc_logp, ll, tau=self.cfg.lm_temperature, reduction="sum")

    def _contrastive(self, batch: Sequence[QARecord]) -> torch.Tensor:
        """DPR: each question against its positive, the batch's other positives and BM25 hard negatives, with
        candidates that also answer a question masked out of its row."""
        cfg = self.cfg
        questions = self.queries(batch)
        pos = neg.positives(batch, self.rag.store)
        hard: list[neg.Candidate] = []
        if cfg.hard_negatives > 0:
            depth = cfg.hard_negatives + max(len(e.positive_ids) for e in batch) + 10
            ranked = self.negatives.search(questions, depth).passages(self.rag.store)
            hard = [c for row in neg.hard_negatives(batch, ranked, cfg.hard_negatives) for c in row]
        cands = pos + hard
        exclude = torch.from_numpy(neg.false_negatives(batch, cands))
        with self.autocast():
            q = self._embed_queries(questions)
            c = self._candidate_vectors(cands, q.device)
        q, c = q.float(), c.float()
        return in_batch_contrastive(q, c[: len(pos)], c[len(pos):] if hard else None,
                                    temperature=cfg.contrastive_temperature, reduction="sum", exclude=exclude)

    # -- retrieval scores with gradient --------------------------------------------------------------------

    def autocast(self):
        """The forward passes' mixed precision (``precision.autocast`` of the run's resolved precision)."""
        return precision.autocast(self.precision, self.cfg.device)

    def _retrieve(self, questions: list[str]) -> tuple[Hits, list[list[Any]]]:
        retriever = self.rag.retriever
        if self.encoder is not None:
            self.encoder.model.eval()  # retrieval itself is deterministic: no dropout in the search pass
        with torch.no_grad():
            hits = retriever.search(questions, self.rag.k, return_vectors=True) if self._trains_prior \
                else retriever.search(questions, self.rag.k)
        return hits, hits.passages(self.rag.store)

    @property
    def _trains_prior(self) -> bool:
        """Whether an encoder learns through f(q, z): then retrieval returns the vectors (and offsets) f is made of."""
        return self.encoder is not None and (self.cfg.train_query_encoder or self.cfg.train_doc_encoder)

    def doc_scores(self, questions: list[str], hits: Hits, rows: list[list[Any]]) -> torch.Tensor:
        """f(q, z) for the retrieved passages, with gradient where an encoder trains."""
        cfg = self.cfg
        if not self._trains_prior:
            return torch.from_numpy(np.asarray(hits.scores, dtype=np.float32)).to(cfg.device)
        q = self._embed_queries(questions)
        if cfg.train_doc_encoder:
            flat = [p.indexed_text if p is not None else "" for row in rows for p in row]
            d = self._embed_passages(flat).view(len(questions), hits.k, -1)
        else:
            if hits.vectors is None:
                raise RagtuneError("the retriever did not return passage vectors; a dense retriever is needed")
            d = torch.from_numpy(np.asarray(hits.vectors, dtype=np.float32)).to(q.device)
        f = torch.einsum("bd,bkd->bk", q.float(), d.float())
        if hits.offsets is not None:  # the score's fixed part (a rescoring hybrid's sparse term)
            f = f + torch.from_numpy(np.asarray(hits.offsets, dtype=np.float32)).to(f.device)
        return f

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
        out = torch.from_numpy(dense_part(self.rag.retriever).passage_vectors(
            np.array([c.id if c.id is not None else EMPTY_ID for c in cands], dtype=np.int64))).to(device)
        texts = [i for i, c in enumerate(cands) if c.id is None]
        if texts:
            with torch.no_grad():
                self.doc_encoder.model.eval()
                out[texts] = self.doc_encoder.embed([cands[i].text for i in texts], kind="passage").to(out.dtype)
        return out
