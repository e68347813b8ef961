"""Question-answering evaluation: run a RAG over questions with gold answers and score it.

Reports SQuAD-normalised EM and F1 (CJK by characters), the retrieval hit rate of the gold passage when the
data names it (by passage id, or by document id, since a paragraph may be chunked into several passages), the
answer recall of the retrieved passages, and seconds per question split into retrieval and generation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ragtune.corpus.squad import QARecord
from ragtune.errors import RagtuneError
from ragtune.evaluation.matching import contains_answer
from ragtune.evaluation.metrics import exact_match, f1_score


def load_qa_dataset(path: str | Path) -> list[QARecord]:
    """SQuAD-style JSON (``{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}``) or JSONL rows
    ``{question, answers, positive_ids?}``; SQuAD questions name their paragraph as gold document."""
    path = Path(path)
    if not path.is_file():
        raise RagtuneError(f"QA dataset {path} not found; pass --dataset with a SQuAD-style .json or a .jsonl file")
    if path.suffix == ".jsonl":
        from ragtune.corpus.squad import load_qa_jsonl

        rows = load_qa_jsonl(path)
        for r in rows:
            r.id = r.id or str(r.line)
        return _nonempty(rows, path)
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RagtuneError(f"{path} is not valid JSON ({e.msg}); use SQuAD-style JSON or JSONL with one question a line") from None
    except UnicodeDecodeError as e:
        raise RagtuneError(f"{path} is not UTF-8 text (invalid byte at offset {e.start}): not a QA dataset") from None
    except RecursionError:
        raise RagtuneError(f"{path}: JSON nested too deeply to be a QA dataset") from None
    if not isinstance(head, dict) or "data" not in head:
        raise RagtuneError(f"{path} is not SQuAD-style JSON (no top-level 'data'); use a .jsonl file of {{question, answers}} rows")
    from ragtune.corpus.squad import load_squad

    data = load_squad(path)
    return _nonempty(data.questions, path)


def _nonempty(examples: list[QARecord], path: Path) -> list[QARecord]:
    # a blank question cannot be asked (CMRC 2018's trial set has one); a score over zero questions would read
    # as a real EM of 0.0
    examples = [e for e in examples if e.question.strip()]
    if not examples:
        raise RagtuneError(f"{path} holds no questions: nothing to evaluate")
    return examples


@dataclass
class QAReport:
    em: float
    f1: float
    n: int
    mode: str
    k: int
    hit_rate: float | None  # gold passage among the retrieved, over questions that name one
    answer_recall: float  # a gold answer string occurs in some retrieved passage
    seconds_per_question: float
    retrieval_seconds_per_question: float
    generation_seconds_per_question: float
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, predictions: bool = False) -> dict[str, Any]:
        d = dict(self.__dict__)
        if not predictions:
            d.pop("predictions")
        return d


def evaluate_qa(
    rag: Any,
    examples: Sequence[QARecord],
    *,
    mode: str | None = None,
    k: int | None = None,
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
    **overrides: Any,
) -> QAReport:
    """Answer every example with ``rag.ask_batch`` and score the answers and the retrieval."""
    mode = mode or rag.mode
    k = k or rag.k
    em = f1 = 0.0
    hits = judged = recall = 0
    t_ret = t_gen = 0.0
    preds = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        outs = rag.ask_batch([e.question for e in batch], mode=mode, k=k, **overrides)
        for e, o in zip(batch, outs):
            t_ret += o.timing.get("retrieval", 0.0)
            t_gen += o.timing.get("generation", 0.0)
            e_em, e_f1 = exact_match(o.answer, e.answers), f1_score(o.answer, e.answers)
            em += e_em
            f1 += e_f1
            if e.positive_doc_ids or e.positive_ids:
                judged += 1
                hits += any(c.doc_id in e.positive_doc_ids or c.id in e.positive_ids for c in o.citations)
            recall += any(contains_answer(c.text, e.answers) for c in o.citations)
            preds.append({"id": e.id, "question": e.question, "answer": o.answer, "gold": e.answers, "em": e_em, "f1": e_f1,
                          "cited": [c.doc_id for c in o.citations]})
        if progress is not None:
            progress(min(start + batch_size, len(examples)), len(examples))
    n = max(len(examples), 1)
    return QAReport(em=em / n, f1=f1 / n, n=len(examples), mode=mode, k=k, hit_rate=hits / judged if judged else None,
                    answer_recall=recall / n, seconds_per_question=(t_ret + t_gen) / n,
                    retrieval_seconds_per_question=t_ret / n, generation_seconds_per_question=t_gen / n, predictions=preds)

