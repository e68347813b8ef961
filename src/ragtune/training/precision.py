"""Mixed precision for training: which dtype the forward passes compute in, chosen once per run.

``precision = "auto"`` is bf16 autocast where the hardware computes bf16 natively (a CUDA device that supports
it; a CPU with AVX512-BF16 or AMX tiles, read from torch's capability flags, never timed), and float32
otherwise. Autocast changes only the dtype matmuls and linear layers compute in: parameters (the master
weights), their gradients and the optimiser state stay float32, and the trainer computes log-softmax and the
losses in float32 (``generation.scoring`` upcasts the logits). fp16 is for CUDA with a ``GradScaler``.
"""
from __future__ import annotations

import contextlib
from typing import Literal

import torch

from ragtune.models.hardware import native_bf16

Precision = Literal["fp32", "bf16", "fp16"]


def resolve(precision: str, device: str) -> Precision:
    """The precision a run computes in: ``precision`` itself, or for ``"auto"`` bf16 where ``device`` computes it
    natively and fp32 elsewhere (MPS included)."""
    if precision != "auto":
        return precision  # type: ignore[return-value]
    return "bf16" if native_bf16(device) else "fp32"


def autocast(precision: Precision, device: str):
    """The context the forward passes run in: ``torch.autocast`` for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)
