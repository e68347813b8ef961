"""A RAG stand-in for server tests: answers word by word through the sink, records its batches, can be slow."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from ragtune.rag.output import Citation, RagOutput
from ragtune.retrieval.index import update

DOCS = {"a.txt": "The Eiffel Tower was completed in 1889.", "b.txt": "Green tea comes from Camellia sinensis."}


def make_index(root: Path) -> Path:
    kb = root / "kb"
    kb.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (kb / name).write_text(text, encoding="utf-8")
    update(root / "idx", [kb])
    return root / "idx"


class FakeRAG:
    """``ask_batch`` answers "the answer to <question> is 1889" one word every ``delay`` seconds."""

    def __init__(self, delay: float = 0.0, fail: Exception | None = None):
        self.delay, self.fail = delay, fail
        self.batches: list[list[str]] = []
        self.calls: list[tuple] = []
        self.stopped_rows = 0
        self.lock = threading.Lock()

    def ask_batch(self, questions, histories=None, sink=None, **options):
        with self.lock:
            self.batches.append(list(questions))
            self.calls.extend((q, tuple(h or ()), dict(options)) for q, h in zip(questions, histories or [()] * len(questions)))
        if self.fail is not None:
            raise self.fail
        words = [f"the answer to {q} is 1889".split() for q in questions]
        done = [0] * len(questions)
        for step in range(max(len(w) for w in words)):
            for r, w in enumerate(words):
                if step < len(w) and not (sink and sink.stopped(r)):
                    if sink:
                        sink.put(r, (" " if step else "") + w[step])
                    done[r] = step + 1
            if sink and all(sink.stopped(r) for r in range(len(questions))):
                break
            time.sleep(self.delay)
        with self.lock:
            self.stopped_rows += sum(d < len(w) for d, w in zip(done, words))
        if sink:
            for r in range(len(questions)):
                sink.usage(r, 10, done[r])
        return [RagOutput(q, " ".join(w[:d]), -0.5, options.get("mode", "concat"),
                          [Citation(1, "a.txt", "Eiffel", "completed in 1889", 0.75, 0.9), Citation(2, "b.txt", "tea", "Green tea", 0.25, 0.1)])
                for q, w, d in zip(questions, words, done)]
