"""Resolving model names (packaged defaults, local paths, hub ids) to something transformers loads."""
from ragtune.models.registry import cache_dir, resolve

__all__ = ["cache_dir", "resolve"]
