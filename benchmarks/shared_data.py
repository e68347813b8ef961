"""Where the shared benchmark data lives: ../shared/datasets beside the repository, or $RAGTUNE_DATASETS."""
import os
from pathlib import Path

DATASETS = Path(os.environ.get("RAGTUNE_DATASETS") or Path(__file__).resolve().parents[1].parent / "shared" / "datasets")


class MemoryStore:
    """The ``store.get(ids)`` seam over passages held in memory (benchmarks skip the SQLite store)."""

    def __init__(self, passages):
        self.by_id = {p.id: p for p in passages}

    def get(self, ids):
        return [self.by_id.get(int(i)) for i in ids]
