"""Training losses as pure functions of tensors.

Shapes follow ``ragtune.rag.marginals``: B questions, K retrieved passages, T answer tokens.
``doc_logp`` (B, K) is log p(z|q) (``-inf`` at empty slots), ``tok_logp`` (B, K, T) is log P(y_t | q, z, y_<t)
of the gold token, ``mask`` (B, T) marks real answer tokens.

Label smoothing needs the whole vocabulary, which ``tok_logp`` (gold tokens only) does not carry, so callers
that want it pass ``smooth_logp`` (B, K, T) = mean over the vocabulary of log P(v | q, z, y_<t). The smoothing
term is the cross-entropy against a uniform target, combined over passages exactly like the gold term
(RAG-Sequence: sum over tokens, then logsumexp over z; RAG-Token: logsumexp over z at each token):

    loss = (1 - eps) * NLL(gold) + eps * NLL(uniform)

For K = 1 this equals HF ``RagSequenceForGeneration.get_nll`` / fairseq label smoothing
(eps / V * sum_v -log p_v = eps * mean_v -log p_v). For K > 1 HF sums log-probs over the vocabulary *before*
the logsumexp over passages, which weights log p(z|q) by V; we use the mean, so the prior keeps its weight.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ragtune.rag.marginals import rag_sequence_loglik, rag_token_loglik

Reduction = Literal["mean", "sum", "none"]


def _reduce(x: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"unknown reduction {reduction!r}; use mean, sum or none")


def _rag_nll(
    loglik_fn,
    doc_logp: torch.Tensor,
    tok_logp: torch.Tensor,
    mask: torch.Tensor,
    label_smoothing: float,
    length_normalize: bool,
    reduction: Reduction,
    smooth_logp: torch.Tensor | None,
) -> torch.Tensor:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    nll = -loglik_fn(doc_logp, tok_logp, mask)
    if label_smoothing > 0.0:
        if smooth_logp is None:
            raise ValueError("label_smoothing > 0 needs smooth_logp (B, K, T): the mean log-prob over the vocabulary")
        nll = (1.0 - label_smoothing) * nll - label_smoothing * loglik_fn(doc_logp, smooth_logp, mask)
    if length_normalize:
        # Per-example token counts, so long answers do not dominate a batch of short ones.
        nll = nll / mask.to(nll.dtype).sum(-1).clamp_min(1.0)
    return _reduce(nll, reduction)


def rag_sequence_nll(
    doc_logp: torch.Tensor,
    tok_logp: torch.Tensor,
    mask: torch.Tensor,
    label_smoothing: float = 0.0,
    length_normalize: bool = False,
    reduction: Reduction = "mean",
    smooth_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """-log P(y|q) with P(y|q) = sum_z p(z|q) prod_t P(y_t | q, z, y_<t) (RAG-Sequence)."""
    return _rag_nll(rag_sequence_loglik, doc_logp, tok_logp, mask, label_smoothing, length_normalize, reduction, smooth_logp)


def rag_token_nll(
    doc_logp: torch.Tensor,
    tok_logp: torch.Tensor,
    mask: torch.Tensor,
    label_smoothing: float = 0.0,
    length_normalize: bool = False,
    reduction: Reduction = "mean",
    smooth_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """-log P(y|q) with P(y|q) = prod_t sum_z p(z|q) P(y_t | q, z, y_<t) (RAG-Token)."""
    return _rag_nll(rag_token_loglik, doc_logp, tok_logp, mask, label_smoothing, length_normalize, reduction, smooth_logp)


def in_batch_contrastive(
    q: torch.Tensor,
    p: torch.Tensor,
    hard_negatives: torch.Tensor | None = None,
    temperature: float = 1.0,
    reduction: Reduction = "mean",
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """DPR's loss: question i against its positive p_i, every other positive in the batch, and hard negatives.

    ``q``, ``p`` are (B, d). ``hard_negatives`` is (N, d) or (B, H, d); as in DPR every question scores every
    hard negative of the batch (a (B, H, d) tensor is flattened to (B*H, d)), since they cost nothing extra.
    Scores are dot products divided by ``temperature``; the loss is the cross-entropy of the positive.
    ``exclude`` (B, B + N) marks candidates that are not negatives of a question although they sit in its row,
    e.g. another question's positive that is the same passage, or that also answers it (false negatives);
    the diagonal (each question's own positive) is never excluded.
    """
    if q.shape != p.shape or q.ndim != 2:
        raise ValueError(f"q {tuple(q.shape)} and p {tuple(p.shape)} must both be (B, d)")
    cands = p
    if hard_negatives is not None:
        cands = torch.cat([p, hard_negatives.reshape(-1, q.shape[-1])], dim=0)
    scores = q @ cands.T / temperature
    target = torch.arange(q.shape[0], device=q.device)
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude {tuple(exclude.shape)} must be (B, candidates) = {tuple(scores.shape)}")
        drop = exclude.to(scores.device).clone()
        drop[target, target] = False
        scores = scores.masked_fill(drop, float("-inf"))
    return F.cross_entropy(scores, target, reduction=reduction)


def lm_supervised_kl(
    doc_logp: torch.Tensor,
    answer_loglik_per_passage: torch.Tensor,
    tau: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """KL(Q || p(z|q)) with Q = softmax(log P(y|q,z) / tau), detached (REPLUG LSR, Atlas perplexity distillation).

    The language model's preference over the retrieved passages is the target; only the retriever learns.
    Empty slots (``doc_logp = -inf``) are excluded from the target too, so they contribute nothing.
    """
    valid = torch.isfinite(doc_logp)
    target_logits = (answer_loglik_per_passage.detach() / tau).masked_fill(~valid, float("-inf"))
    target_logp = torch.log_softmax(target_logits, dim=-1)
    target = target_logp.exp()
    # Zero-probability target slots contribute 0 (0 * log 0 / 0 * -inf are defined as 0 here).
    terms = torch.where(target > 0, target * (target_logp - doc_logp), torch.zeros_like(target))
    return _reduce(terms.sum(-1), reduction)
