"""The training schedule as pure functions of (config, step): which examples a step sees, and its learning rates.

One optimiser step consumes ``batch_size * grad_accum`` examples. Each epoch's order is a permutation seeded by
``seed + epoch``, so the global step alone fixes the data position and a resumed run replays exactly the
batches an uninterrupted one would.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ragtune.config import TrainingConfig


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


def steps_per_epoch(n_rows: int, cfg: TrainingConfig) -> int:
    return max(1, n_rows // (cfg.batch_size * cfg.grad_accum))


def total_steps(n_rows: int, cfg: TrainingConfig) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * steps_per_epoch(n_rows, cfg)))


def step_batches(n_rows: int, cfg: TrainingConfig, step: int) -> list[list[int]]:
    """Row indices of the micro-batches of optimiser step ``step``."""
    epoch, pos = divmod(step, steps_per_epoch(n_rows, cfg))
    g = torch.Generator().manual_seed(cfg.seed + epoch)
    order = torch.randperm(n_rows, generator=g).tolist()
    n = cfg.batch_size * cfg.grad_accum
    chunk = order[pos * n : (pos + 1) * n] or order[:n]
    b = cfg.batch_size
    return [chunk[j : j + b] for j in range(0, len(chunk), b)]


def optimizer(params_gen: Sequence[torch.nn.Parameter], params_enc: Sequence[torch.nn.Parameter], cfg: TrainingConfig,
              total: int, retriever_delay: int = 0) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with one group for the generator (``lr``) and one for the encoders (``encoder_lr``, held at 0 for
    ``retriever_delay`` steps), each with linear warm-up and decay."""
    groups, lambdas = [], []
    warmup = round(cfg.warmup_ratio * total)
    if params_gen:
        groups.append({"params": list(params_gen), "lr": cfg.lr})
        lambdas.append(linear_warmup_decay(warmup, total))
    if params_enc:
        groups.append({"params": list(params_enc), "lr": cfg.encoder_lr})
        d = min(retriever_delay, total - 1)
        lambdas.append(linear_warmup_decay(round(cfg.warmup_ratio * (total - d)), total, delay=d))
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambdas)
