"""The RAG model's probability algebra as pure tensor functions (Lewis et al. 2020, eqs. 1-2).

Shapes: B questions, K retrieved passages, T answer tokens. ``tok_logp[b, z, t]`` is log P(y_t | q_b, z, y_<t)
of the *gold/hypothesis* token t, and ``mask[b, t]`` marks real (not padding) answer tokens. Empty retrieval
slots carry ``doc_logp = -inf`` and so contribute nothing to any sum over z.
"""
from __future__ import annotations

import torch


def doc_log_prior(scores: torch.Tensor, temperature: float = 1.0, valid: torch.Tensor | None = None) -> torch.Tensor:
    """log p(z|q) = log_softmax(f(q,z) / temperature) over the top-k; invalid slots get -inf."""
    s = scores / temperature
    if valid is not None:
        s = s.masked_fill(~valid, float("-inf"))
    return torch.log_softmax(s, dim=-1)


def passage_logliks(tok_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log P(y | q, z) for each passage: (B, K, T) -> (B, K)."""
    return (tok_logp * mask.unsqueeze(1).to(tok_logp.dtype)).sum(-1)


def rag_sequence_loglik(doc_logp: torch.Tensor, tok_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log P(y|q) = logsumexp_z [ log p(z|q) + sum_t log P(y_t | q, z, y_<t) ]  -> (B,)."""
    return torch.logsumexp(doc_logp + passage_logliks(tok_logp, mask), dim=-1)


def rag_token_logliks(doc_logp: torch.Tensor, tok_logp: torch.Tensor) -> torch.Tensor:
    """Per-token mixture log P(y_t | q, y_<t) = logsumexp_z [ log p(z|q) + log P(y_t | q, z, y_<t) ] -> (B, T)."""
    return torch.logsumexp(doc_logp.unsqueeze(-1) + tok_logp, dim=1)


def rag_token_loglik(doc_logp: torch.Tensor, tok_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log P(y|q) = sum_t logsumexp_z [ log p(z|q) + log P(y_t | q, z, y_<t) ]  -> (B,)."""
    return (rag_token_logliks(doc_logp, tok_logp) * mask.to(tok_logp.dtype)).sum(-1)


def passage_posterior(doc_logp: torch.Tensor, seq_logp: torch.Tensor) -> torch.Tensor:
    """p(z | q, y) ∝ p(z|q) P(y|q,z), from log p(z|q) and log P(y|q,z), both (B, K) -> (B, K) summing to 1."""
    return torch.softmax(doc_logp + seq_logp, dim=-1)
