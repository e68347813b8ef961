"""Where the shared benchmark data lives: ../shared/datasets beside the repository, or $RAGTUNE_DATASETS."""
import os
from pathlib import Path

DATASETS = Path(os.environ.get("RAGTUNE_DATASETS") or Path(__file__).resolve().parents[1].parent / "shared" / "datasets")
