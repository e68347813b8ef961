"""CTranslate2 exports: a transformers model (or a LoRA directory, merged first) converted once, cached, and
redone when its source changes.

The export keeps float32 weights, so one conversion serves every ``compute_type`` (int8 on CPU, float16 or
int8_float16 on CUDA, float32 for exact agreement with torch): CTranslate2 converts the weights as it loads them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from ragtune.atomic import atomic_dir, write_json
from ragtune.errors import RagtuneError

MARKER = "ragtune-ct2.json"  # written last into an export: its source fingerprint
INSTALL = "pip install 'ragtune[fast]' (or: pip install ctranslate2)"


def require() -> None:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        raise RagtuneError(f"the ctranslate2 backend needs CTranslate2: {INSTALL}; or use --backend torch") from None


def is_export(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file() and (Path(path) / "model.bin").is_file()


def source_fingerprint(src: str | Path) -> str:
    """Names, sizes and times of the files a conversion reads, and the config's bytes: a retrained or replaced
    model gets a new fingerprint, so a stale export is never used."""
    src = Path(src)
    h = hashlib.sha1()
    for f in sorted(p for p in src.iterdir() if p.is_file() and p.name != MARKER):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    if (src / "config.json").is_file():
        h.update((src / "config.json").read_bytes())
    return h.hexdigest()


MergeFn = Callable[[Path, Path], Path]  # (LoRA adapter dir, empty dir) -> a plain model saved there


def cached_export(src: str | Path, merge: MergeFn | None = None) -> Path:
    """The CTranslate2 export of ``src`` (a model directory), converting it on first use or when ``src``
    changed since; ``src`` may itself be an export. A LoRA directory needs ``merge``."""
    from ragtune.models.registry import cache_dir

    src = Path(src).resolve()
    if is_export(src):
        return src
    out = cache_dir() / "ctranslate2" / f"{src.name}-{hashlib.sha1(str(src).encode()).hexdigest()[:10]}"
    fp = source_fingerprint(src)
    if is_export(out) and json.loads((out / MARKER).read_text()).get("fingerprint") == fp:
        return out
    print(f"ragtune: converting {src.name} for CTranslate2, once (cached in {out})", file=sys.stderr)
    export(src, out, fingerprint=fp, merge=merge)
    return out


def export(src: str | Path, out: str | Path, *, fingerprint: str | None = None, merge: MergeFn | None = None) -> Path:
    """Convert the transformers model at ``src`` (a LoRA adapter directory is first merged into its base by
    ``merge``) into a CTranslate2 directory ``out`` with its tokenizer; atomic, so a crash never leaves a half
    export."""
    require()
    from ctranslate2.converters import TransformersConverter

    src, out = Path(src), Path(out)
    with tempfile.TemporaryDirectory(prefix="ragtune-merge-") as merged:
        model_dir = src
        if (src / "adapter_config.json").exists():
            if merge is None:
                raise RagtuneError(f"{src} holds LoRA adapters; merge them into the base model before converting")
            model_dir = merge(src, Path(merged))
        with atomic_dir(out) as tmp:
            try:
                TransformersConverter(str(model_dir), low_cpu_mem_usage=True,
                                      copy_files=_tokenizer_files(model_dir)).convert(str(tmp), quantization="float32", force=True)
            except (ValueError, NotImplementedError, KeyError) as e:
                raise RagtuneError(f"CTranslate2 cannot convert {src} ({str(e).splitlines()[0]}); use --backend torch") from None
            for name in ("generation_config.json",):
                if (model_dir / name).exists():
                    shutil.copy2(model_dir / name, tmp / name)
            write_json(tmp / MARKER, {"source": str(src), "fingerprint": fingerprint or source_fingerprint(src)})
    return out


def _tokenizer_files(model_dir: Path) -> list[str]:
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
             "tokenizer.model", "chat_template.jinja")
    return [n for n in names if (model_dir / n).exists()]
