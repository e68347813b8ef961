"""``ragtune eval dialogue``: knowledge selection and response quality of chat turns.

Each example is one response of a conversation (``dialogue.kdconv.DialogueExample``): the turns before it are
the history, its annotated triples the knowledge it should use. Scores:

* knowledge Recall@k: the share of a response's annotated triples held by the top-k passages retrieved for its
  turn (a path passage holds the triples along its paths; a document passage a triple whose subject and object
  it contains);
* response BLEU-1/4 (corpus), character F1, Distinct-1/2 (``evaluation.dialogue_metrics``), and the share of
  responses containing an annotated object value;
* with turns that need no knowledge among the examples: how often the turn's choice (some passage kept, or none
  under ``[chat] min_knowledge``) matches the annotation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ragtune.evaluation.dialogue_metrics import bleu, char_f1, contains_value, distinct
from ragtune.retrieval.base import EMPTY_ID

Triple = tuple[str, str, str]
RECALL_DEPTHS = (1, 5)


def _norm(text: str) -> str:
    return " ".join(text.split())


def holds(store: Any, passage: Any, triple: Triple) -> bool:
    """Whether a retrieved passage carries a triple (see the module docstring)."""
    if passage is None:
        return False
    s, r, o = (_norm(x) for x in triple)
    triples = getattr(store, "triples", None)
    if triples is not None:
        held = triples(passage.id)
        if held:
            return any((_norm(a), _norm(b), _norm(c)) == (s, r, o) for a, b, c in held)
    text = _norm(f"{passage.title} {passage.text}")
    return bool(o) and o in text and s in text


def knowledge_recall(store: Any, row: Sequence[Any], gold: Sequence[Triple], k: int) -> float:
    """Share of ``gold`` held by the first ``k`` passages of ``row`` (1.0 when nothing is annotated)."""
    if not gold:
        return 1.0
    top = [p for p in row[:k] if p is not None]
    return sum(any(holds(store, p, t) for p in top) for t in gold) / len(gold)


@dataclass
class DialogueReport:
    mode: str
    k: int
    query: str
    n: int = 0  # responses with knowledge (the recall and response metrics' denominator)
    recall: dict[int, float] = field(default_factory=dict)
    bleu1: float | None = None
    bleu4: float | None = None
    f1: float | None = None
    distinct1: float | None = None
    distinct2: float | None = None
    value_rate: float | None = None
    decision_accuracy: float | None = None  # with no-knowledge turns among the examples
    n_all: int = 0
    seconds: float = 0.0
    predictions: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {f"knowledge_recall@{k}": v for k, v in self.recall.items()}
        d |= {"bleu1": self.bleu1, "bleu4": self.bleu4, "f1": self.f1, "distinct1": self.distinct1,
              "distinct2": self.distinct2, "value_rate": self.value_rate, "n": self.n, "mode": self.mode, "k": self.k,
              "query": self.query, "seconds_per_turn": self.seconds / max(self.n_all, 1)}
        if self.decision_accuracy is not None:
            d |= {"decision_accuracy": self.decision_accuracy, "n_all": self.n_all}
        return d


def evaluate_dialogue(rag: Any, examples: Sequence[Any], *, mode: str | None = None, k: int | None = None,
                      generate: bool = True, batch_size: int = 8, progress: Callable[[int, int], None] | None = None,
                      **decoding: Any) -> DialogueReport:
    """Retrieve for every turn (to depth ``max(5, k)``) and, with ``generate``, reply with ``rag.chat_batch``."""
    mode = mode or rag.mode
    k = k or rag.k
    depth = max(max(RECALL_DEPTHS), k)
    report = DialogueReport(mode, k, rag.chat.query)
    sums = dict.fromkeys(RECALL_DEPTHS, 0.0)
    replies: list[str] = []
    refs: list[str] = []
    values = 0.0
    decided = 0
    t0 = time.perf_counter()
    for start in range(0, len(examples), batch_size):
        batch = list(examples[start:start + batch_size])
        msgs, hists = [e.message for e in batch], [e.history for e in batch]
        queries = rag.turn_queries(msgs, hists)  # built once: a rewrite costs a generation
        hits = rag.retrieve_turns(msgs, hists, depth, queries=queries)
        rows = hits.passages(rag.store)
        outs = rag.chat_batch(msgs, hists, queries=queries, mode=mode, k=k, **decoding) if generate else [None] * len(batch)
        for e, row, ids, out in zip(batch, rows, hits.ids, outs):
            used = bool((ids[:k] != EMPTY_ID).any())
            decided += used == bool(e.knowledge)
            pred: dict[str, Any] = {"history": [list(t) for t in e.history], "message": e.message, "response": e.response,
                                    "knowledge": [list(t) for t in e.knowledge], "knowledge_used": used}
            if e.knowledge:
                report.n += 1
                for d in RECALL_DEPTHS:
                    r = knowledge_recall(rag.store, row, e.knowledge, d)
                    sums[d] += r
                    pred[f"recall@{d}"] = r
                if out is not None:
                    replies.append(out.answer)
                    refs.append(e.response)
                    values += contains_value(out.answer, [o for _, _, o in e.knowledge])
            if out is not None:
                pred["reply"] = out.answer
                pred["retrieval"] = out.retrieval
            report.predictions.append(pred)
        report.n_all += len(batch)
        if progress is not None:
            progress(report.n_all, len(examples))
    report.seconds = time.perf_counter() - t0
    n = max(report.n, 1)
    report.recall = {d: sums[d] / n for d in RECALL_DEPTHS}
    if report.n_all > report.n:
        report.decision_accuracy = decided / report.n_all
    if generate and replies:
        report.bleu1, report.bleu4 = bleu(replies, refs, 1), bleu(replies, refs, 4)
        report.f1 = sum(char_f1(p, r) for p, r in zip(replies, refs)) / len(replies)
        report.distinct1, report.distinct2 = distinct(replies, 1), distinct(replies, 2)
        report.value_rate = values / len(replies)
    return report
