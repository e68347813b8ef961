"""Gradient checkpointing: which modules get it, and gradients equal to the run without it."""
from __future__ import annotations

import pytest
import torch

from ragtune.config import TrainingConfig
from ragtune.errors import RagtuneError
from ragtune.training import memory
from ragtune.training.trainer import Trainer
from tests.training.conftest import make_rag


def test_auto_checkpoints_the_long_sequences():
    auto = TrainingConfig()
    assert memory.wanted(auto, "generator") and not memory.wanted(auto, "encoder")
    docs = TrainingConfig(train_doc_encoder=True)
    assert memory.wanted(docs, "encoder") and memory.wanted(docs, "doc_encoder")
    docs_only = TrainingConfig(train_doc_encoder=True, train_query_encoder=False)
    assert memory.wanted(docs_only, "doc_encoder") and not memory.wanted(docs_only, "encoder")
    assert not memory.wanted(TrainingConfig(gradient_checkpointing=False), "generator")
    assert memory.wanted(TrainingConfig(gradient_checkpointing=True), "encoder")


def test_required_checkpointing_of_an_unsupported_model_is_an_error():
    assert memory.enable(torch.nn.Linear(2, 2), True, required=False) is False
    with pytest.raises(RagtuneError, match="does not support gradient checkpointing"):
        memory.enable(torch.nn.Linear(2, 2), True, required=True)


def _grads_and_layer_calls(world, tmp_path, checkpointing: bool, lora: bool):
    cfg = TrainingConfig(batch_size=4, max_steps=1, precision="fp32", gradient_checkpointing=checkpointing, lora=lora,
                         lora_r=4, lora_dropout=0.0, seed=1)
    tr = Trainer(make_rag(world), world["train"], None, cfg, tmp_path / str(checkpointing), progress=False)
    assert tr.checkpointing == {"generator": checkpointing, "encoder": checkpointing}
    calls = {"generator": 0, "encoder": 0}
    gen = tr.generator.model.get_base_model() if lora else tr.generator.model
    # pre-hooks of a module inside the first layer (transformers keeps a layer's own hooks outside the checkpoint,
    # and torch stops a recompute early once the saved tensors are back, before some post-hooks would fire)
    layers = {"generator": gen.model.layers[0].mlp, "encoder": tr.encoder.model.encoder.layer[0].intermediate}
    for name, layer in layers.items():
        layer.register_forward_pre_hook(lambda *a, name=name: calls.__setitem__(name, calls[name] + 1))
    for m in tr.modules.values():
        m.train()
    torch.manual_seed(0)  # the encoder's dropout draws from here; checkpointing replays the same masks
    loss, n = tr.batch_loss(tr.step_examples(0)[0])
    (loss / n).backward()
    grads = {f"{name}.{p_name}": p.grad.clone() for name, m in tr.modules.items()
             for p_name, p in m.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads, calls


@pytest.mark.parametrize("lora", [False, True])
def test_gradients_equal_with_and_without_checkpointing(small_world, tmp_path, lora):
    loss0, g0, calls0 = _grads_and_layer_calls(small_world, tmp_path, False, lora)
    loss1, g1, calls1 = _grads_and_layer_calls(small_world, tmp_path, True, lora)
    # checkpointing really recomputed: each checkpointed layer ran again in backward
    assert calls1["generator"] > calls0["generator"] and calls1["encoder"] > calls0["encoder"]
    assert loss0 == pytest.approx(loss1, rel=1e-6)
    assert g0.keys() == g1.keys() and any(k.startswith("encoder.") for k in g0) and any(k.startswith("generator.") for k in g0)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-6, msg=k)


def _rss_mb() -> float:
    from pathlib import Path

    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_release_freed_gives_freed_heap_pages_back():
    import numpy as np

    # 200 MB in 100 KB blocks (below glibc's default mmap threshold, so on the heap); the last one stays alive at
    # the heap's top, so glibc's own trimming (only from the top) cannot return the freed ones. Trimming first makes
    # the blocks fresh pages, not free ones earlier tests left resident, so they must show in RSS.
    assert memory.release_freed() is True
    start = _rss_mb()
    blocks = [np.ones(100_000 // 8) for _ in range(2000)]
    keep = blocks[-1]
    del blocks
    before = _rss_mb()
    assert before - start > 150  # freeing alone gave nothing back: the pages are there to trim
    memory.release_freed()
    assert before - _rss_mb() > 150  # the freed 200 MB, less what the heap reused
    assert keep.sum() == 12_500


def _without_kernel_cache_env(monkeypatch) -> None:
    """Both names unset, and restored after the test (setenv first: delenv of an unset name records nothing)."""
    for name in memory.KERNEL_CACHE_ENVS:
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)


def test_kernel_cache_is_bounded_unless_the_user_chose(monkeypatch):
    import os

    _without_kernel_cache_env(monkeypatch)
    assert memory.bound_kernel_cache() == "128" == str(memory.KERNEL_CACHE_CAPACITY)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "128"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")
    assert memory.bound_kernel_cache() == "7"
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "7"
    _without_kernel_cache_env(monkeypatch)
    monkeypatch.setenv("DNNL_PRIMITIVE_CACHE_CAPACITY", "9")  # oneDNN's older name counts as the user's choice
    assert memory.bound_kernel_cache() == "9"
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ


@pytest.mark.parametrize("user", [None, "5"])
def test_importing_training_bounds_the_kernel_cache_first(user):
    """oneDNN reads the variable at its first kernel, which encoding builds before any Trainer exists."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in memory.KERNEL_CACHE_ENVS}
    if user:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = user
    code = "import os, ragtune.training; print(os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == (user or "128")


def test_trainer_bounds_the_kernel_cache_as_it_is_built(small_world, tmp_path, monkeypatch):
    import os

    _without_kernel_cache_env(monkeypatch)
    Trainer(make_rag(small_world), small_world["train"], None, TrainingConfig(batch_size=4, max_steps=1), tmp_path,
            progress=False)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "128"


def _pass_shapes_and_loss(world, tmp_path, budget):
    cfg = TrainingConfig(batch_size=4, max_steps=1, precision="fp32", max_pass_tokens=budget, seed=1)
    tr = Trainer(make_rag(world), world["train"], None, cfg, tmp_path / str(budget), progress=False)
    shapes: list[tuple[int, int]] = []
    tr.generator.model.register_forward_pre_hook(
        lambda m, args, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    torch.manual_seed(0)  # the query encoder's dropout: the same masks in both runs
    loss, n = tr.batch_loss(tr.step_examples(0)[0])
    assert sum(r for r, _ in shapes) == 4 * tr.rag.k  # every passage prompt scored once
    return shapes, float(loss.detach())


def test_generator_passes_stay_within_max_pass_tokens(small_world, tmp_path):
    free, loss_free = _pass_shapes_and_loss(small_world, tmp_path, None)
    bound, loss_bound = _pass_shapes_and_loss(small_world, tmp_path, 64)
    assert max(r * length for r, length in free) > 64  # the bound has something to cut
    assert len(bound) > len(free)
    assert all(r * length <= 64 or r == 1 for r, length in bound)
    assert loss_bound == pytest.approx(loss_free, rel=1e-5)  # the grouping does not change the loss
