"""Loading a BEIR dataset folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, NamedTuple

from ragtune.corpus.readers import read_beir_corpus
from ragtune.corpus.types import Document
from ragtune.errors import RagtuneError

_LAYOUT = "a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv"


class BeirDataset(NamedTuple):
    """Unpacks as ``corpus, queries, qrels``. ``corpus`` is lazy: iterate it once (or call ``load_beir`` again)."""

    corpus: Iterator[Document]
    queries: dict[str, str]  # query id -> text, only the queries judged in the split
    qrels: dict[str, dict[str, int]]  # query id -> {corpus id: relevance}


def beir_splits(folder: str | Path) -> list[str]:
    """The qrels splits a BEIR folder has, e.g. ``["test", "train"]``."""
    qdir = Path(folder) / "qrels"
    return sorted(p.stem for p in qdir.glob("*.tsv")) if qdir.is_dir() else []


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """``query-id<TAB>corpus-id<TAB>score`` rows (a header line is optional)."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.rstrip("\n\r").split("\t")
            if not line.strip() or (n == 1 and parts[0] == "query-id"):
                continue
            if len(parts) < 3:
                raise RagtuneError(f"{path}:{n}: expected query-id, corpus-id and score separated by tabs")
            try:
                score = int(float(parts[2]))
            except ValueError:
                raise RagtuneError(f"{path}:{n}: score {parts[2]!r} is not a number") from None
            qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def load_queries(path: str | Path, wanted: set[str] | None = None) -> dict[str, str]:
    """``{"_id", "text"}`` rows; only ids in ``wanted`` when given."""
    path = Path(path)
    queries: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                qid, text = str(row["_id"]), str(row["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise RagtuneError(f"{path}:{n}: not a BEIR query row with '_id' and 'text' ({e})") from e
            if wanted is None or qid in wanted:
                queries[qid] = text
    return queries


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """A BEIR dataset: the corpus (lazy), the split's judged queries, and its qrels.

    Qrels of queries missing from ``queries.jsonl`` are dropped, so ``queries`` and ``qrels`` have the same keys.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RagtuneError(f"BEIR folder {folder} not found ({_LAYOUT})")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / name).is_file() and not (name == "corpus.jsonl" and (folder / "corpus.jsonl.gz").is_file()):
            raise RagtuneError(f"{folder} has no {name} ({_LAYOUT})")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = ", ".join(beir_splits(folder)) or "none"
        raise RagtuneError(f"{folder} has no qrels/{split}.tsv (splits found: {have})")
    qrels = load_qrels(qrels_path)
    queries = load_queries(folder / "queries.jsonl", set(qrels))
    if qrels and not queries:
        raise RagtuneError(f"none of the {len(qrels)} queries in {qrels_path} are in {folder / 'queries.jsonl'}")
    qrels = {qid: rel for qid, rel in qrels.items() if qid in queries}
    return BeirDataset(read_beir_corpus(folder), queries, qrels)
