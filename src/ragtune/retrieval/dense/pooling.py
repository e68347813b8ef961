"""Pooling token states into one vector, as pure functions of ``(hidden, mask)``.

``hidden`` is (batch, seq, dim) and ``mask`` the (batch, seq) attention mask (1 = real token). Every function
works with left- or right-padded batches, so the encoder does not care which side a tokenizer pads.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Literal

import torch

PoolingName = Literal["mean", "cls", "last"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' states (sentence-transformers' ``pooling_mode_mean_tokens``)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    # clamp: an all-padding row (never produced by a tokenizer, but possible by hand) gives zeros, not NaN.
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first real token's state ([CLS] for BERT-style tokenizers), also under left padding."""
    first = mask.to(torch.long).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last real token's state, as decoder-based embedders (e5-mistral, gte-Qwen) pool."""
    seq = mask.shape[1]
    last = seq - 1 - mask.to(torch.long).flip(dims=[1]).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLING: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_pool,
    "cls": cls_pool,
    "last": last_token_pool,
}


def pool(name: str, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    try:
        fn = POOLING[name]
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; choose one of {sorted(POOLING)}") from None
    return fn(hidden, mask)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit rows, so inner product is cosine similarity; zero rows stay zero."""
    return x / x.norm(p=2, dim=-1, keepdim=True).clamp(min=eps)


def pooling_from_model_dir(path: str | Path) -> PoolingName | None:
    """The pooling a sentence-transformers model was trained with (``1_Pooling/config.json``), if it says.

    Returns None when the directory has no such file or asks for a mode we do not implement (max, mean-sqrt-len).
    """
    cfg_file = Path(path) / "1_Pooling" / "config.json"
    if not cfg_file.is_file():
        return None
    cfg = json.loads(cfg_file.read_text())
    if "pooling_mode" in cfg:  # newer sentence-transformers write one string
        mode = {"mean": "mean", "cls": "cls", "lasttoken": "last"}.get(cfg["pooling_mode"])
        return mode  # type: ignore[return-value]
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_lasttoken"):
        return "last"
    return None
