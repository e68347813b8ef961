"""A training step's memory: gradient checkpointing (which trained modules recompute their activations in the
backward pass), a bound on oneDNN's kernel cache (``bound_kernel_cache``) and giving the heap's freed pages back
after each step (``release_freed``).

A RAG step runs the generator over B x k prompts of a few hundred tokens; storing every layer's activations for
the backward pass is most of a step's memory. Checkpointing keeps only each layer's input and recomputes the
layer in backward (about one more forward pass of compute). ``"auto"`` turns it on where sequences are long:
the generator whenever it trains, and the encoder only when passages are re-embedded with gradient
(``train_doc_encoder``); the query side alone encodes ~15-token questions, where it would cost time for nothing.
Non-reentrant checkpointing (``use_reentrant=False``) preserves the RNG state, so dropout masks and gradients
are those of the run without it.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Any

from ragtune.config import TrainingConfig
from ragtune.errors import RagtuneError


def wanted(cfg: TrainingConfig, module: str) -> bool:
    """Whether ``module`` ("generator", "encoder" or "doc_encoder", as in ``Trainer.modules``) checkpoints."""
    if cfg.gradient_checkpointing != "auto":
        return bool(cfg.gradient_checkpointing)
    if module == "generator":
        return True
    return cfg.train_doc_encoder and (module == "doc_encoder" or cfg.train_query_encoder)


def enable(model: Any, on: bool, *, required: bool) -> bool:
    """Turn transformers' gradient checkpointing on or off for ``model`` (a PEFT wrapper reaches the model inside);
    returns whether it is on. A model without support is an error when ``required``, else left as it is."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        if on and required:
            raise RagtuneError(f"{type(model).__name__} does not support gradient checkpointing; "
                               "set training.gradient_checkpointing = false")
        return False
    # transformers 5 renamed gradient_* to activation_checkpointing_* (the old names warn until v6)
    new_api = hasattr(model, "activation_checkpointing_enable")
    if on and new_api:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif getattr(model, "is_activation_checkpointing" if new_api else "is_gradient_checkpointing", False):
        (model.activation_checkpointing_disable if new_api else model.gradient_checkpointing_disable)()
    return on


def apply(modules: dict[str, Any], cfg: TrainingConfig) -> dict[str, bool]:
    """Checkpointing for every trained module as the config asks; returns {module name: on}."""
    required = cfg.gradient_checkpointing is True
    return {name: enable(m, wanted(cfg, name), required=required) for name, m in modules.items()}


KERNEL_CACHE_ENVS = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")  # oneDNN's name, its older one
KERNEL_CACHE_CAPACITY = 128


def bound_kernel_cache() -> str:
    """Ask oneDNN to cache at most ``KERNEL_CACHE_CAPACITY`` compiled kernels, unless the user set either of
    ``KERNEL_CACHE_ENVS``; returns the capacity requested. bf16 matmuls on CPU run as oneDNN primitives, one per
    input shape, and the default cache keeps 1,024 of them with their buffers: bucketed prompt lengths make new
    shapes every step, so RSS between steps grew for a dozen steps and settled near 2.06 GB in the reference LoRA
    run (bench_train_lean.py, 40 steps), against 1.78 GB at 128, at the same step time; with no cache at all
    steps took 1.4x as long. The step's peak is set by its largest forward pass (``max_pass_tokens``), not by
    this. oneDNN reads the variable when it builds its first kernel (MiniLM's fp32 GELU is one), so this must run
    before any model runs; after that it changes nothing. Importing ``ragtune.training`` calls it, and the
    Trainer again as it is built."""
    for name in KERNEL_CACHE_ENVS:
        if name in os.environ:
            return os.environ[name]
    os.environ[KERNEL_CACHE_ENVS[0]] = str(KERNEL_CACHE_CAPACITY)
    return os.environ[KERNEL_CACHE_ENVS[0]]


def release_freed() -> bool:
    """Hand the pages of freed tensors back to the operating system (glibc's ``malloc_trim``), once a step; False
    where there is no glibc. glibc keeps freed heap blocks mapped for reuse, and a step's tensors change shape with
    every batch (bucketed prompt lengths), so the resident set grows with each new shape seen. Reference LoRA run
    (bench_train_lean.py, 8 steps): without it RSS climbed to 2.9 GB and peaked at 3.06 GB; with it RSS was 1.9 GB
    between steps and peaked at 2.73 GB, at the same step time (17.7 against 17.9 s). glibc's environment knobs
    cost far more: a fixed mmap threshold made steps 1.6x slower, a 1 MB trim threshold 1.8x."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    return trim is not None


def peak_rss_mb() -> float | None:
    """The process's peak resident set so far, MB (``getrusage``), logged with every step so a long run shows
    which step raised it; None where there is no ``resource`` module (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, looked up once; None where the C library has none (musl, macOS, Windows)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
