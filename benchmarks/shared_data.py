"""Where the shared benchmark data lives: ../shared/datasets beside the repository, or $RAGTUNE_DATASETS;
``update_results``, for a results file that several runs write parts of; and Linux's per-process memory
counters (``rss_mb``, ``reset_peak``) for the benchmarks that measure a phase's peak."""
import json
import os
from pathlib import Path
from typing import NamedTuple

DATASETS = Path(os.environ.get("RAGTUNE_DATASETS") or Path(__file__).resolve().parents[1].parent / "shared" / "datasets")


def update_results(out: Path, fields: dict) -> None:
    """Update ``out``'s JSON with ``fields``, keeping what other runs wrote there (their own top-level keys)."""
    res = json.loads(out.read_text()) if out.exists() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res | fields, indent=1))


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set in MB from /proc/self/status (``VmHWM``: its peak since the last ``reset_peak``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Start VmHWM (and with it ``getrusage``'s ru_maxrss) afresh at the current RSS: "5" to clear_refs (Linux >= 4.0).
    Where that is not allowed a phase's peak would silently include earlier ones, so it is an error."""
    Path("/proc/self/clear_refs").write_text("5")


class MemoryStore:
    """The ``store.get(ids)`` seam over passages held in memory (benchmarks skip the SQLite store)."""

    def __init__(self, passages):
        self.by_id = {p.id: p for p in passages}

    def get(self, ids):
        return [self.by_id.get(int(i)) for i in ids]


class SquadOpenBook(NamedTuple):
    split: object  # corpus.squad.OpenBookSplit: documents, train and test questions
    passages: list  # one Passage per paragraph, ids 1..n
    pid_of: dict  # paragraph id -> passage id


def squad_open_book() -> SquadOpenBook:
    """The SQuAD v1.1 open-book split every QA benchmark uses (../shared/datasets/README.md)."""
    from ragtune.corpus.squad import load_squad, open_book_split
    from ragtune.corpus.types import Passage

    data = load_squad(DATASETS / "squad_v1.1" / "dev-v1.1.json")
    passages = [Passage(i + 1, d.id, d.text, d.title) for i, d in enumerate(data.documents)]
    return SquadOpenBook(open_book_split(data), passages, {p.doc_id: p.id for p in passages})
