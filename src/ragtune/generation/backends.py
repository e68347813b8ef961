"""Generator backends by name: torch (trainable) and CTranslate2 (fast inference), one ``Generator`` surface."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.errors import RagtuneError
from ragtune.generation.generator import Generator

BACKENDS = ("torch", "ctranslate2")


def backend_class(backend: str | None, model: Any = None) -> type[Generator]:
    """The generator class of ``backend``; ``None`` picks CTranslate2 for a CTranslate2 export, else torch."""
    if backend is None:
        from ragtune.models.ctranslate2 import is_export

        backend = "ctranslate2" if isinstance(model, (str, Path)) and is_export(model) else "torch"
    if backend == "torch":
        return Generator
    if backend == "ctranslate2":
        from ragtune.generation.ct2 import CT2Generator

        return CT2Generator
    raise RagtuneError(f"unknown generator backend {backend!r}; choose one of {', '.join(BACKENDS)}")
