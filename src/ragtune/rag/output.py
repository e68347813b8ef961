"""What every RAG answer returns (the answer, its log-probability and the passages it drew on, as citations), and
``AnswerStream``, the same answer streamed."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.corpus.types import Passage


@dataclass
class Citation:
    """A retrieved passage with p(z|q) (``prior``, from retrieval scores) and p(z|q,y) (``posterior``, how much the
    answer y relies on it: p(z|q) P(y|q,z) normalised over the top-k)."""

    id: int
    doc_id: str
    title: str
    text: str
    prior: float
    posterior: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RagOutput:
    question: str
    answer: str
    logprob: float  # log P(answer | question) under ``mode``
    mode: str
    citations: list[Citation] = field(default_factory=list)
    # seconds of this answer's share of its batch, {"retrieval", "generation"}: a measurement, not part of the
    # answer (not in to_dict, not compared)
    timing: dict[str, float] = field(default_factory=dict, compare=False)
    # a chat turn's retrieval: {"query": the text retrieved with, "rewrite"?: the generator's standalone question,
    # "entities"?: [[name, weight], ...] tracked over the conversation}; None for a plain question
    retrieval: dict[str, Any] | None = None
    # {"prompt_tokens": tokens the generator read for this answer}: a measurement, like timing
    usage: dict[str, int] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {"question": self.question, "answer": self.answer, "logprob": self.logprob, "mode": self.mode,
             "citations": [c.to_dict() for c in self.citations]}
        return d if self.retrieval is None else d | {"retrieval": self.retrieval}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RagOutput":
        return cls(d["question"], d["answer"], d["logprob"], d["mode"], [Citation(**c) for c in d.get("citations", [])],
                   retrieval=d.get("retrieval"))


class AnswerStream:
    """Iterate for the answer's text chunks; after the last one, ``output`` holds the full ``RagOutput`` (the same
    one ``ask`` returns: streaming only lets the caller see the text sooner)."""

    def __init__(self, streamed: Any):
        from ragtune.generation.streaming import answer_pieces

        self._streamed = streamed
        self._chunks = answer_pieces(streamed, lambda out: out.answer)
        self.output: RagOutput | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._chunks
        self.output = self._streamed.result


def citations(row: "Sequence[Passage | None]", prior: Any, post: Any) -> list[Citation]:
    """The citations of one answer: its retrieved passages (None: an empty slot) with p(z|q) and p(z|q,y)."""
    return [Citation(p.id, p.doc_id, p.title, p.text, float(prior[z]), float(post[z])) for z, p in enumerate(row) if p is not None]
