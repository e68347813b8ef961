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

Precision = Literal["fp32", "bf16", "fp16"]


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), from torch's capability flags."""
    flags = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, f, lambda: False)()) for f in flags)


def _cuda_supports_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve(precision: str, device: str) -> Precision:
    """The precision a run computes in: ``precision`` itself, or for ``"auto"`` bf16 where ``device`` computes it
    natively and fp32 elsewhere (MPS included)."""
    if precision != "auto":
        return precision  # type: ignore[return-value]
    if device.startswith("cuda"):
        return "bf16" if _cuda_supports_bf16() else "fp32"
    if device.startswith("cpu"):
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def autocast(precision: Precision, device: str):
    """The context the forward passes run in: ``torch.autocast`` for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)
