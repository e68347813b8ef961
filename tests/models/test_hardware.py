"""The generator's dtype "auto": bfloat16 where the device computes it natively, float32 elsewhere."""
from __future__ import annotations

import torch

from ragtune.models import hardware


def test_resolve_dtype_by_hand(monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16", lambda device: device == "cpu")
    assert hardware.resolve_dtype("auto", "cpu") == "bfloat16"
    assert hardware.resolve_dtype("auto", "mps") == "float32"
    assert hardware.resolve_dtype("float16", "cpu") == "float16"  # an explicit dtype is kept
    assert hardware.native_bf16.__name__ == "<lambda>"


def test_mps_and_unknown_devices_are_not_native_bf16():
    assert hardware.native_bf16("mps") is False
    assert hardware.native_bf16("cpu") == hardware.cpu_supports_bf16()


def test_generator_dtype_auto_loads_bf16_weights_where_native(monkeypatch, tmp_path):
    from ragtune.generation import Generator
    from tests.helpers.tiny_lm import tiny_causal_lm

    lm = tiny_causal_lm(tmp_path / "lm")
    for native, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(hardware, "native_bf16", lambda device, native=native: native)
        gen = Generator(str(lm), dtype="auto", max_new_tokens=2)
        assert {p.dtype for p in gen.model.parameters()} == {want}
        assert len(gen.generate(["hello"])[0].token_ids) >= 1  # and it decodes
