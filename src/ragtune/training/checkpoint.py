"""Resumable training state on disk, written atomically.

``DIR/checkpoint/`` holds what an exact resume needs: the trainable tensors (full weights or LoRA adapters,
query/doc encoder), optimiser, scheduler, grad scaler, the global step (which fixes the data position, since
each epoch's order is a seeded permutation) and every rank's RNG states. It is written to a temporary
directory and renamed into place (``ragtune.atomic.atomic_dir``), so a crash mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ragtune.atomic import atomic_dir

STATE_FILE = "trainer_state.pt"
WEIGHTS_FILE = "trainable.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trainable_state(modules: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    """Only tensors that train: frozen weights come back from the base model, so LoRA checkpoints stay small."""
    return {
        name: {n: p.detach().cpu().clone() for n, p in m.named_parameters() if p.requires_grad}
        for name, m in modules.items()
    }


def load_trainable_state(modules: dict[str, torch.nn.Module], state: dict[str, dict[str, torch.Tensor]]) -> None:
    for name, m in modules.items():
        saved = state.get(name, {})
        params = dict(m.named_parameters())
        wanted = {n for n, p in params.items() if p.requires_grad}
        if set(saved) != wanted:
            missing, extra = sorted(wanted - set(saved))[:3], sorted(set(saved) - wanted)[:3]
            raise ValueError(f"checkpoint does not match {name!r}: missing {missing}, unexpected {extra}")
        with torch.no_grad():
            for n, t in saved.items():
                params[n].copy_(t.to(params[n].device))


def save_checkpoint(path: Path, modules: dict[str, torch.nn.Module], state: dict[str, Any],
                    extra: Callable[[Path], None] | None = None) -> None:
    """``extra(tmp)`` writes anything else the resume needs (e.g. a re-encoded index) into the same atomic save."""
    with atomic_dir(path) as tmp:
        torch.save(trainable_state(modules), tmp / WEIGHTS_FILE)
        torch.save(state, tmp / STATE_FILE)
        if extra is not None:
            extra(tmp)


def load_checkpoint(path: Path, modules: dict[str, torch.nn.Module]) -> dict[str, Any]:
    path = Path(path)
    if not (path / STATE_FILE).exists():
        from ragtune.errors import RagtuneError

        raise RagtuneError(f"no checkpoint to resume from in {path}; run without --resume to start fresh")
    load_trainable_state(modules, torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=False))
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)


