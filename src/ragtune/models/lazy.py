"""Heavy objects load on first use (Haystack-2 style): building one costs nothing, e.g. for `--help` or a config check."""
from __future__ import annotations

from typing import Any


class LazyModel:
    """A transformers model and tokenizer pair that ``_load`` fills in the first time either is touched."""

    _model: Any = None
    _tokenizer: Any = None

    def _load(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @property
    def model(self) -> Any:
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._load()
        return self._tokenizer
