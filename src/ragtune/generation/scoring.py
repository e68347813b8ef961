"""Teacher-forced scoring of token rows: one forward pass of the torch backend behind ``Generator.token_logprobs``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.generation.generator import Generator


def score_rows(g: "Generator", p_ids: list[list[int]], y_ids: list[list[int]], width: int,
               vocab_mean: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, width) target log-probs of one forward pass, padded to ``width``, and the vocabulary-mean
    log-probs when ``vocab_mean`` (else None: a pass over (N, T, V) that most callers do not need)."""
    dev, pad = g.device, g.pad_token_id
    T = max(len(y) for y in y_ids)
    N = len(p_ids)
    lens = torch.tensor([len(y) for y in y_ids])
    tgt = torch.full((N, T), pad, dtype=torch.long)
    for i, y in enumerate(y_ids):
        tgt[i, : len(y)] = torch.tensor(y)
    tgt = tgt.to(dev)
    if g.is_seq2seq:
        enc = g.tokenizer.pad({"input_ids": p_ids}, padding=True, return_tensors="pt")
        dec = torch.cat([g._decoder_start(N), tgt[:, :-1]], 1)
        dec_mask = (torch.arange(T)[None] < lens[:, None]).to(dev)
        logits = g.model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev),
                         decoder_input_ids=dec, decoder_attention_mask=dec_mask.long(), use_cache=False).logits
    else:
        # Left-pad prompt+target so every target ends at the last column; then only the last T+1 positions
        # need the vocabulary projection (the (N, L, V) logits of long RAG prompts would not fit in memory).
        seqs = [p + y for p, y in zip(p_ids, y_ids)]
        L = max(len(s) for s in seqs)
        ids = torch.full((N, L), pad, dtype=torch.long)
        att = torch.zeros((N, L), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, L - len(s):] = torch.tensor(s)
            att[i, L - len(s):] = 1
        logits = g._causal_forward(ids.to(dev), att.to(dev), keep=T + 1, use_cache=False)[0].logits
        logits = logits[:, -(T + 1):-1]
        # kept column j predicts absolute column L-T+j; row i's target starts at column L-len_i, i.e. j = T-len_i
        j = ((T - lens)[:, None] + torch.arange(T)[None]).clamp(max=T - 1).to(dev)
        logits = logits.gather(1, j[..., None].expand(-1, -1, logits.shape[-1]))
    logits = logits.float()
    norm = logits.logsumexp(-1)
    valid = (torch.arange(T)[None] < lens[:, None]).to(dev)
    logp = (logits.gather(-1, tgt[..., None]).squeeze(-1) - norm).masked_fill(~valid, 0.0)
    mean = (logits.mean(-1) - norm).masked_fill(~valid, 0.0) if vocab_mean else None
    if width > T:
        logp = torch.nn.functional.pad(logp, (0, width - T))
        mean = torch.nn.functional.pad(mean, (0, width - T)) if mean is not None else None
    return logp, mean


def score_after_shared_prompt(g: "Generator", p_ids: list[int], y_ids: list[list[int]]) -> list[float]:
    """sum_t log P(y_t | prompt, y_<t) of each target after one causal prompt whose prefill (KV cache) all the
    targets share: one prompt forward, then one forward over the right-padded targets, instead of one forward of
    prompt + target per target."""
    dev, pad = g.device, g.pad_token_id
    H, T = len(y_ids), max(len(y) for y in y_ids)
    prompt = torch.tensor([p_ids], device=dev)
    out, pos = g._causal_forward(prompt, torch.ones_like(prompt), keep=1, use_cache=True)
    first = out.logits[:, -1].float().log_softmax(-1)  # (1, V): the first target token of every row
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    cache.batch_repeat_interleave(H)
    tgt = torch.full((H, T), pad, dtype=torch.long)
    for i, y in enumerate(y_ids):
        tgt[i, : len(y)] = torch.tensor(y)
    tgt = tgt.to(dev)
    lens = torch.tensor([len(y) for y in y_ids], device=dev)
    totals = first[0, tgt[:, 0]]
    if T > 1:
        steps = tgt[:, :-1]  # feeding y_<t predicts y_t; padding columns are masked out of the sums below
        att = torch.cat([torch.ones(H, len(p_ids), dtype=torch.long, device=dev),
                         (torch.arange(T - 1, device=dev)[None] < (lens - 1)[:, None]).long()], 1)
        positions = (len(p_ids) + torch.arange(T - 1, device=dev))[None].expand(H, -1)
        logits = g.model(input_ids=steps, attention_mask=att, position_ids=positions, use_cache=True,
                         **{g.cache_kwarg: cache}).logits.float()
        logp = logits.log_softmax(-1).gather(-1, tgt[:, 1:, None]).squeeze(-1)
        valid = torch.arange(1, T, device=dev)[None] < lens[:, None]
        totals = totals + (logp * valid).sum(-1)
    return totals.cpu().tolist()


def split_like(flat: list[float], groups: "list[Sequence[str]] | Sequence[Sequence[str]]") -> list[list[float]]:
    """``flat`` cut into consecutive pieces as long as each of ``groups``."""
    out, i = [], 0
    for g in groups:
        out.append(flat[i:i + len(g)])
        i += len(g)
    return out
