"""What a device computes natively, read from torch's capability flags (never timed): bf16 is chosen where it is
fast, by training's ``precision = "auto"`` and the generator's ``dtype = "auto"``."""
from __future__ import annotations


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    import torch

    flags = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, f, lambda: False)()) for f in flags)


def native_bf16(device: str) -> bool:
    """True when ``device`` ("cpu", "cuda", "cuda:1", ...) computes bf16 natively; False elsewhere (MPS included)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.startswith("cpu"):
        return cpu_supports_bf16()
    return False


def resolve_dtype(dtype: str, device: str) -> str:
    """A generator's weight dtype: ``dtype`` itself, or for ``"auto"`` bfloat16 where ``device`` computes it natively
    (prefill, compute-bound on a CPU, runs about twice as fast) and float32 elsewhere."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if native_bf16(device) else "float32"
