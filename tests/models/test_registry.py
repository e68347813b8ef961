import json

import pytest

from ragtune.models import registry


def test_local_paths_and_hub_ids_pass_through(tmp_path):
    assert registry.resolve(str(tmp_path)) == str(tmp_path)
    assert registry.resolve("someone/some-model") == "someone/some-model"


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setitem(registry.PACKAGED, "ghost", registry.Packaged("no_such_model_package_xyz"))
    with pytest.raises(FileNotFoundError, match="pip install"):
        registry.resolve("ghost")


@pytest.mark.slow
def test_packaged_minilm_resolves_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = registry.resolve("minilm")
    assert json.loads(open(f"{path}/config.json").read())["model_type"] == "bert"


@pytest.mark.slow
def test_gguf_converts_once_to_a_loadable_fp32_checkpoint(tmp_path, monkeypatch):
    """The first use on a fresh machine converts the packaged GGUF; a second call reuses the cache."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    path = registry.resolve("smollm2-135m-instruct")
    config = json.loads(open(f"{path}/config.json").read())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    stamp = (tmp_path / "models" / "smollm2-135m-instruct-fp32" / "config.json").stat().st_mtime_ns
    assert registry.resolve("smollm2-135m-instruct") == path
    assert (tmp_path / "models" / "smollm2-135m-instruct-fp32" / "config.json").stat().st_mtime_ns == stamp
    model = AutoModelForCausalLM.from_pretrained(path)
    assert next(model.parameters()).dtype.is_floating_point and not list(tmp_path.glob("models/*.tmp-*"))
