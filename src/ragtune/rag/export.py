"""Exporting a model for the fast inference backend: a ``ragtune train`` output (or any generator model) becomes a
directory that ``ragtune ask --model DIR`` runs on CTranslate2.

A trained directory keeps its layout (``rag.trained``): the retriever parts are copied, the generator is
replaced by its CTranslate2 export (LoRA adapters merged first) with the same ``generator.json`` settings.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ragtune.atomic import atomic_dir, write_json
from ragtune.errors import RagtuneError

BACKENDS = ("ctranslate2",)


def export_model(model: str | Path, out: str | Path, *, backend: str = "ctranslate2") -> Path:
    """Write ``model`` (a trained directory, a model directory or a packaged name) for ``backend`` into ``out``."""
    from ragtune.generation.ct2 import merge_lora
    from ragtune.generation.generator import SETTINGS_FILE, Generator
    from ragtune.models import ctranslate2 as ct2
    from ragtune.models.registry import resolve
    from ragtune.rag.trained import (DENSE_INDEX_DIR, GENERATOR_DIR, META_FILE, QUERY_ENCODER_DIR, index_of, is_trained_dir,
                                     read_meta)

    if backend not in BACKENDS:
        raise RagtuneError(f"unknown export backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    ct2.require()
    out = Path(out)
    if not is_trained_dir(model):
        return ct2.export(Path(resolve(str(model))), out, merge=merge_lora)
    model = Path(model)
    meta = read_meta(model)
    generator = Generator.load(model / GENERATOR_DIR)
    source = Path(resolve(generator.model_name))
    with atomic_dir(out) as tmp:
        for part in (QUERY_ENCODER_DIR, DENSE_INDEX_DIR):  # the retriever parts; not the training checkpoint
            if (model / part).is_dir():
                shutil.copytree(model / part, tmp / part)
        ct2.export(source, tmp / GENERATOR_DIR, merge=merge_lora)
        write_json(tmp / GENERATOR_DIR / SETTINGS_FILE, generator.settings())
        # the export lives elsewhere than the model it came from: name the index absolutely
        write_json(tmp / META_FILE, {**meta, "index": str(index_of(model, meta))})
    return out
