"""The types every generator backend shares: decoding options, one decoded answer, and stop-string cutting."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from ragtune.errors import RagtuneError

Decoding = Literal["greedy", "beam", "sample"]


@dataclass
class Generation:
    """One decoded answer: ``text`` (stripped, cut at a stop string), the generated ``token_ids`` (with the final
    eos when the model emitted one) and ``logprob`` = sum of log P(token | prompt, previous tokens) over them."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprob: float = 0.0


@dataclass
class DecodeOptions:
    max_new_tokens: int = 64
    decoding: Decoding = "greedy"
    num_beams: int = 4
    temperature: float = 0.7
    top_p: float = 0.9
    stop: tuple[str, ...] = ()
    num_return_sequences: int = 1
    length_penalty: float = 1.0
    # eos cannot end an answer before this many new tokens (a stop string still can): beam search otherwise
    # prefers short replies
    min_new_tokens: int = 0

    def updated(self, overrides: dict[str, Any]) -> "DecodeOptions":
        """These options with ``overrides`` applied (None leaves a value); unknown names are a TypeError."""
        unknown = set(overrides) - set(DecodeOptions.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown generation options: {sorted(unknown)}")
        d = self.__dict__ | {k: v for k, v in overrides.items() if v is not None}
        d["stop"] = tuple(d["stop"])
        if d["decoding"] not in ("greedy", "beam", "sample"):
            raise RagtuneError(f"unknown decoding {d['decoding']!r}; use greedy, beam or sample")
        if d["min_new_tokens"] < 0:
            raise RagtuneError(f"min_new_tokens must be 0 or more, not {d['min_new_tokens']}")
        d["min_new_tokens"] = min(d["min_new_tokens"], d["max_new_tokens"])  # a call's shorter limit wins
        return DecodeOptions(**d)


def stop_index(text: str, stop: Sequence[str]) -> int | None:
    """Where the first stop string starts in ``text``, or None."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(cuts) if cuts else None


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to its first stop string, stripped: the answer a reader sees."""
    cut = stop_index(text, stop)
    return (text[:cut] if cut is not None else text).strip()
