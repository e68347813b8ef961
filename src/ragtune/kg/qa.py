"""KGQA data and evaluation: PathQuestion files, seeded splits (random, and by (topic, relation sequence)),
Hits@1 / EM / F1 / path recall@k, and a runner over a ``RAG``.

Rows are the one QA record type (``corpus.squad.QARecord``); a PathQuestion row's ``positive_texts`` holds its
gold relation chain as the path scorer reads it (``kg.graph.chain_text``), the positive for contrastive training.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ragtune.corpus.squad import QARecord
from ragtune.errors import RagtuneError
from ragtune.evaluation.metrics import exact_match, f1_score
from ragtune.kg.graph import chain_text, relation_text


@dataclass
class KGQuestion:
    record: QARecord
    topic: str = ""  # the gold path's first entity ("" when the row does not say)
    relations: tuple[str, ...] = ()  # the gold path's relations

    @property
    def group(self) -> tuple[str, tuple[str, ...]]:
        """What the hard split keeps on one side: (topic entity, relation sequence)."""
        return self.topic, self.relations


def parse_pathquestion(line: str, n: int = 0) -> KGQuestion:
    """``question<TAB>answer(a1/a2/...)<TAB>s#r1#e1#r2#...#answer[#<end>#answer]``; raises ``ValueError``."""
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) != 3:
        raise ValueError(f"expected 3 tab-separated fields (question, answers, path), got {len(parts)}")
    question, ans, path = (p.strip() for p in parts)
    if not question:
        raise ValueError("empty question")
    head, _, rest = ans.partition("(")
    answers = [a for a in rest.rstrip(")").split("/") if a.strip()] or [head]
    hops = path.split("#")
    if "<end>" in hops:
        hops = hops[: hops.index("<end>")]
    if len(hops) < 3 or len(hops) % 2 == 0:
        raise ValueError(f"path {path[:80]!r} is not subject#relation#entity...")
    rels = tuple(hops[1::2])
    gold = chain_text([relation_text(r) for r in rels])
    return KGQuestion(QARecord(question, answers, [], [gold], n), hops[0], rels)


def load_kgqa(path: str | Path, problems: list[str] | None = None) -> list[KGQuestion]:
    """JSONL rows ``{question, answers[, positive_texts]}`` or a PathQuestion file (any other suffix). Bad lines
    are skipped and described in ``problems`` (or raise when ``problems`` is None)."""
    path = Path(path)
    if not path.is_file():
        raise RagtuneError(f"KGQA dataset {path} not found; give JSONL {{question, answers}} rows or a PathQuestion file")
    if path.suffix == ".jsonl":
        from ragtune.corpus.squad import load_qa_jsonl

        rows = [KGQuestion(r) for r in load_qa_jsonl(path, strict=problems is None, problems=problems)]
    else:
        rows = []
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as e:
            raise RagtuneError(f"{path} is not UTF-8 text (invalid byte at offset {e.start})") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(parse_pathquestion(line, n))
            except ValueError as e:
                if problems is None:
                    raise RagtuneError(f"{path} line {n}: {e}") from None
                problems.append(f"line {n}: {e}")
    if not rows:
        raise RagtuneError(f"{path} holds no questions")
    return rows


def parse_ratios(spec: str) -> tuple[float, ...]:
    try:
        parts = tuple(float(x) for x in spec.split(":"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise RagtuneError(f"--split takes TRAIN:DEV:TEST weights such as 8:1:1, got {spec!r}")
    return parts


def _cut(n: int, ratios: Sequence[float]) -> tuple[int, int]:
    total = sum(ratios)
    a = round(n * ratios[0] / total)
    b = a + round(n * ratios[1] / total)
    return a, b


def random_split(rows: Sequence[KGQuestion], ratios: Sequence[float] = (8, 1, 1), seed: int = 0) -> tuple[list, list, list]:
    """Train/dev/test by question, shuffled with ``seed`` (the split the published PathQuestion numbers use)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    a, b = _cut(len(rows), ratios)
    return [rows[i] for i in order[:a]], [rows[i] for i in order[a:b]], [rows[i] for i in order[b:]]


def hard_split(rows: Sequence[KGQuestion], ratios: Sequence[float] = (8, 1, 1), seed: int = 0) -> tuple[list, list, list]:
    """Whole (topic entity, relation sequence) groups go to one side, so no test question's pair (nor its
    paraphrases) occurs in training; groups are shuffled with ``seed`` and filled up to the ratios by count."""
    groups: dict[Any, list[KGQuestion]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    keys = sorted(groups, key=lambda k: (k[0], k[1]))
    random.Random(seed).shuffle(keys)
    a, b = _cut(len(rows), ratios)
    out: tuple[list, list, list] = ([], [], [])
    seen = 0
    for k in keys:
        side = 0 if seen < a else (1 if seen < b else 2)
        out[side].extend(groups[k])
        seen += len(groups[k])
    return out


# -- metrics (pure) -----------------------------------------------------------------------------------------

def _spaced(s: str) -> str:
    return s.replace("_", " ")


def hits_at_1(prediction: str, golds: Sequence[str]) -> float:
    """1 when the answer equals a gold answer after normalisation (case, underscores, punctuation, articles; CJK
    compared by characters), else 0."""
    return exact_match(_spaced(prediction), [_spaced(g) for g in golds]) if prediction.strip() else 0.0


def answer_f1(prediction: str, golds: Sequence[str]) -> float:
    return f1_score(_spaced(prediction), [_spaced(g) for g in golds])


def path_recall(tails: Sequence[Sequence[str]], golds: Sequence[str]) -> float:
    """1 when a gold answer is a tail of one of the retrieved paths (``tails``: each path's tail entities)."""
    return float(any(hits_at_1(t, golds) for row in tails for t in row))


# -- the runner ---------------------------------------------------------------------------------------------

@dataclass
class KGQAReport:
    mode: str
    k: int
    n: int = 0
    hits1: float = 0.0
    em: float = 0.0
    f1: float = 0.0
    path_recall: float = 0.0
    seconds: float = 0.0
    predictions: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"hits@1": self.hits1, "em": self.em, "f1": self.f1, f"path_recall@{self.k}": self.path_recall,
                "n": self.n, "mode": self.mode, "k": self.k,
                "seconds_per_question": self.seconds / max(self.n, 1)}


def evaluate_kgqa(rag: Any, rows: Sequence[KGQuestion | QARecord], *, mode: str | None = None, k: int | None = None,
                  batch_size: int = 16, progress: Callable[[int, int], None] | None = None, **decoding: Any) -> KGQAReport:
    """Answer every question with ``rag`` (any mode, ``path`` included) and score Hits@1, EM, F1 and path
    recall@k (a gold answer is a tail of one of the top-k retrieved paths)."""
    mode = mode or rag.mode
    k = k or rag.k
    recs = [r.record if isinstance(r, KGQuestion) else r for r in rows]
    report = KGQAReport(mode, k)
    tails_of = getattr(rag.store, "tails", lambda i: [])
    t0 = time.perf_counter()
    for start in range(0, len(recs), batch_size):
        batch = recs[start:start + batch_size]
        qs = [r.question for r in batch]
        hits = rag.retrieve(qs, k)
        if mode == "path":  # the answer is the best path's tail: no need to retrieve a second time
            from ragtune.kg.store import path_answer

            preds = [path_answer(rag.store, row) for row in hits.passages(rag.store)]
        else:
            preds = [o.answer for o in rag.ask_batch(qs, mode=mode, k=k, **decoding)]
        for r, pred, ids in zip(batch, preds, hits.ids):
            tails = [tails_of(int(i)) for i in ids if i >= 0]
            h, e, f, pr = hits_at_1(pred, r.answers), exact_match(pred, r.answers), answer_f1(pred, r.answers), path_recall(tails, r.answers)
            report.hits1 += h
            report.em += e
            report.f1 += f
            report.path_recall += pr
            report.predictions.append({"question": r.question, "answers": r.answers, "prediction": pred,
                                       "hits@1": h, "path_recall": pr})
        report.n += len(batch)
        if progress is not None:
            progress(report.n, len(recs))
    report.seconds = time.perf_counter() - t0
    n = max(report.n, 1)
    report.hits1, report.em, report.f1, report.path_recall = (report.hits1 / n, report.em / n, report.f1 / n,
                                                              report.path_recall / n)
    return report
