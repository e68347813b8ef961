"""Training data: a JSONL of question-answer rows, converters into it, and a deterministic train/dev split.

One row per line::

    {"question": "...", "answers": ["...", ...], "positive_ids": [12, 40], "positive_texts": ["..."]}

``positive_ids`` (passage-store ids) and ``positive_texts`` are optional; they feed Recall@k during evaluation
and contrastive losses. A bad row (not JSON, a missing or empty field, an id the index does not hold) is
reported with its line number and skipped, or, with ``strict=True``, raises ``RagtuneError`` so a typo in a
file never silently shrinks a training set.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Container, Iterable, Iterator, Sequence

from ragtune.atomic import atomic_file
from ragtune.corpus.squad import QARecord, parse_qa_row, read_jsonl_rows
from ragtune.errors import RagtuneError

log = logging.getLogger(__name__)


@dataclass
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class LoadReport:
    path: str
    examples: int
    problems: list[Problem]

    def summary(self, limit: int = 5) -> str:
        head = "; ".join(str(p) for p in self.problems[:limit])
        more = f" (+{len(self.problems) - limit} more)" if len(self.problems) > limit else ""
        return f"{self.path}: {len(self.problems)} bad rows skipped: {head}{more}"


def parse_row(obj: Any, line: int, *, known_ids: Container[int] | None = None, require_answers: bool = True) -> QARecord:
    """One validated example (the row format is ``corpus.squad.parse_qa_row``'s); raises ``ValueError`` naming
    the problem, including positive ids the index does not hold."""
    r = parse_qa_row(obj, line, require_answers=require_answers)
    if known_ids is not None:
        missing = [i for i in r.positive_ids if i not in known_ids]
        if missing:
            raise ValueError(f"positive_ids not in the index: {missing[:5]}")
    return r


def load_examples(
    path: str | Path,
    *,
    known_ids: Container[int] | None = None,
    strict: bool = False,
    require_answers: bool = True,
) -> tuple[list[QARecord], LoadReport]:
    """Read a JSONL training file. Bad rows are skipped and listed in the report (or raise with ``strict``)."""
    path = Path(path)
    if not path.exists():
        raise RagtuneError(f"training file {path} does not exist")
    problems: list[Problem] = []

    def bad(n: int, msg: str) -> None:
        if strict:
            raise RagtuneError(f"{path} line {n}: {msg}") from None
        problems.append(Problem(n, msg))

    examples = read_jsonl_rows(path, lambda row, n: parse_row(row, n, known_ids=known_ids, require_answers=require_answers), bad)
    report = LoadReport(str(path), len(examples), problems)
    if not examples:  # the error carries the summary; a warning too would say it twice
        raise RagtuneError(f"{path}: no usable rows" + (f" ({report.summary()})" if problems else ""))
    if problems:
        log.warning(report.summary())
    return examples, report


def write_examples(rows: Iterable[QARecord | dict], path: str | Path) -> int:
    """Write rows as JSONL (atomically: temp file, then rename); returns the count."""
    n = 0
    with atomic_file(path) as f:
        for r in rows:
            f.write(json.dumps(r.to_row() if isinstance(r, QARecord) else r, ensure_ascii=False) + "\n")
            n += 1
    return n


def split_examples(examples: Sequence[QARecord], dev_fraction: float, seed: int = 0) -> tuple[list[QARecord], list[QARecord]]:
    """A seeded random train/dev split; the same seed always gives the same split."""
    if not 0.0 < dev_fraction < 1.0:
        raise RagtuneError(f"dev fraction must be in (0, 1), got {dev_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(examples) * dev_fraction))
    dev = set(order[:n_dev])
    return [e for i, e in enumerate(examples) if i not in dev], [e for i, e in enumerate(examples) if i in dev]


# -- converters -------------------------------------------------------------------------------------------

def squad_rows(
    squad: dict | str | Path,
    *,
    articles: slice | Sequence[int] | None = None,
    passage_ids: Callable[[str, str], list[int]] | None = None,
) -> Iterator[QARecord]:
    """Rows from SQuAD-style JSON: each question's paragraph is its positive passage.

    ``articles`` selects articles by position (the open-book split uses 0-35 for training).
    ``passage_ids(title, context)``, when given, maps a paragraph to the passage-store ids holding it.
    """
    if not isinstance(squad, dict):
        with open(squad, encoding="utf-8") as f:
            squad = json.load(f)
    data = squad["data"]
    if isinstance(articles, slice):
        chosen = data[articles]
    elif articles is not None:
        chosen = [data[i] for i in articles]
    else:
        chosen = data
    for art in chosen:
        title = art.get("title", "")
        for para in art["paragraphs"]:
            ctx = para["context"]
            ids = passage_ids(title, ctx) if passage_ids else []
            for qa in para["qas"]:
                answers = list(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a["text"].strip()))
                if answers:
                    yield QARecord(qa["question"].strip(), answers, list(ids), [ctx])


def beir_rows(
    beir_dir: str | Path,
    split: str = "train",
    *,
    doc_passage_ids: Callable[[str], list[int]] | None = None,
) -> Iterator[QARecord]:
    """Rows from a BEIR folder's queries and ``qrels/<split>.tsv``: relevant documents become positives.

    BEIR has no answers, so rows carry none; they serve retriever training (load with ``require_answers=False``).
    ``doc_passage_ids(corpus_id)``, when given, maps a BEIR document to the passage-store ids of its chunks.
    """
    beir_dir = Path(beir_dir)
    qrels: dict[str, list[str]] = {}
    with open(beir_dir / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        for n, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if n == 0 and not parts[-1].lstrip("-").isdigit():  # header
                continue
            if len(parts) >= 3 and int(parts[2]) > 0:
                qrels.setdefault(parts[0], []).append(parts[1])
    corpus: dict[str, str] = {}
    wanted = {d for ds in qrels.values() for d in ds}
    with open(beir_dir / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if doc["_id"] in wanted:
                corpus[doc["_id"]] = doc.get("text", "")
    with open(beir_dir / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            docs = qrels.get(q["_id"])
            if not docs:
                continue
            ids = [i for d in docs for i in (doc_passage_ids(d) if doc_passage_ids else [])]
            yield QARecord(q["text"], [], ids, [corpus[d] for d in docs if d in corpus])


def store_text_lookup(store) -> Callable[[str, str], list[int]]:
    """``passage_ids(title, context)`` over a passage store: the passages whose text lies inside the paragraph
    (chunking may split one paragraph into several passages)."""
    by_text: dict[str, list[int]] = {}
    for batch in store.iter_passages():
        for p in batch:
            by_text.setdefault(" ".join(p.text.split()), []).append(p.id)

    def lookup(title: str, context: str) -> list[int]:
        ctx = " ".join(context.split())
        hit = by_text.get(ctx)
        if hit is not None:
            return list(hit)
        return [i for t, ids in by_text.items() if t and t in ctx for i in ids]

    return lookup


def store_doc_lookup(store) -> Callable[[str], list[int]]:
    """``doc_passage_ids(doc_id)`` over a passage store: the passages (chunks) of one source document."""
    by_doc: dict[str, list[int]] = {}
    for batch in store.iter_passages():
        for p in batch:
            if p.doc_id is not None:
                by_doc.setdefault(str(p.doc_id), []).append(p.id)
    return lambda doc_id: list(by_doc.get(str(doc_id), []))
