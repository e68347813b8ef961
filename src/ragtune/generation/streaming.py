"""Watching a batched generation as it runs: each row's new text as it is decoded, and rows stopped early.

A server batches many requests into one ``Generator.generate`` call; a ``TokenSink`` hears each row's text as
it grows (to stream it to that row's client) and can stop a row whose client went away or timed out, so it
costs no more decoding steps. ``watch_kwargs`` turns a sink into the ``streamer`` and ``stopping_criteria``
that ``transformers``' ``generate`` takes.
"""
from __future__ import annotations

from queue import Queue
from threading import Thread
from typing import Any, Callable, Generic, Iterator, Protocol, Sequence, TypeVar

from ragtune.generation.options import stop_index


class TokenSink(Protocol):
    def put(self, row: int, text: str) -> None:
        """New text of row ``row`` (the pieces concatenate to the answer, before stripping)."""

    def stopped(self, row: int) -> bool:
        """True to stop decoding row ``row`` now (its client left or timed out)."""

    def usage(self, row: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Called once per row when decoding ends."""


class _BatchStreamer:
    """A transformers streamer for batches: ``put`` gets the prompts first, then one (B,) token tensor a step."""

    def __init__(self, tokenizer: Any, sink: TokenSink, eos: Sequence[int], stop: Sequence[str], prompt_tokens: Sequence[int]):
        self.tokenizer, self.sink, self.eos, self.stop = tokenizer, sink, set(eos), tuple(stop)
        self.prompt_tokens = list(prompt_tokens)
        n = len(self.prompt_tokens)
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.shown = [0] * n
        self.done = [False] * n
        self.cut = [False] * n
        self.started = False
        # never show the first characters of a stop string before we know it is one
        self.hold = max((len(s) for s in self.stop), default=1) - 1

    def put(self, value: Any) -> None:
        if not self.started:  # the prompt ids (or the decoder start tokens)
            self.started = True
            return
        for row, tok in enumerate(value.reshape(-1).tolist()):
            self.put_token(row, tok)

    def put_token(self, row: int, tok: int) -> bool:
        """Row ``row`` decoded ``tok``; returns True once the row is done (eos, a stop string, or its sink said
        stop). Backends that report rows one token at a time call this directly."""
        if self.done[row]:
            return True
        if tok in self.eos:
            self.done[row] = True
            return True
        self.ids[row].append(tok)
        self._emit(row, final=False)
        if self.sink.stopped(row):  # decoding stops here; what follows in this row is padding
            self.done[row] = True
        return self.done[row]

    def _emit(self, row: int, final: bool) -> None:
        text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
        cut = stop_index(text, self.stop)
        if cut is not None:
            end = cut
            self.done[row] = self.cut[row] = True
        elif final:
            end = len(text.rstrip())
        else:
            end = len(text) - self.hold
            while end > self.shown[row] and text[end - 1] == "\ufffd":  # an incomplete UTF-8 sequence: wait for the rest
                end -= 1
        if end > self.shown[row]:
            self.sink.put(row, text[self.shown[row]:end])
            self.shown[row] = end

    def end(self) -> None:
        for row in range(len(self.ids)):
            if not self.cut[row]:
                self._emit(row, final=True)
            self.sink.usage(row, self.prompt_tokens[row], len(self.ids[row]))


def watch_kwargs(tokenizer: Any, sink: TokenSink, attention_mask: Any, eos: Sequence[int], stop: Sequence[str]) -> dict[str, Any]:
    """``generate`` keyword arguments that stream every row into ``sink`` and stop the rows it asks to stop."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    class Streamer(_BatchStreamer, BaseStreamer):
        pass

    class Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.tensor([sink.stopped(r) for r in range(input_ids.shape[0])], dtype=torch.bool, device=input_ids.device)

    streamer = Streamer(tokenizer, sink, eos, stop, attention_mask.sum(-1).tolist())
    return {"streamer": streamer, "stopping_criteria": StoppingCriteriaList([Stop()])}


R = TypeVar("R")


class Streamed(Generic[R]):
    """One call that decodes through a sink, as an iterator: ``call(sink)`` runs in a thread, iterating yields the
    text pieces its first row hears (the pieces concatenate to the answer before stripping; nothing for a call
    that does not stream, e.g. beam search), and afterwards ``result`` holds what the call returned. An exception
    in the call is raised in the iterating thread."""

    def __init__(self, call: Callable[[TokenSink], R]):
        self._call = call
        self.result: R | None = None

    def __iter__(self) -> Iterator[str]:
        pieces: Queue = Queue()
        box: dict[str, Any] = {}

        class Sink:
            def put(self, row: int, text: str) -> None:
                if row == 0:
                    pieces.put(text)

            def stopped(self, row: int) -> bool:
                return False

            def usage(self, row: int, prompt_tokens: int, completion_tokens: int) -> None:
                pass

        def run() -> None:
            try:
                box["result"] = self._call(Sink())
            except BaseException as e:  # surfaced in the caller's thread below
                box["error"] = e
            finally:
                pieces.put(None)

        thread = Thread(target=run, daemon=True)
        thread.start()
        while (piece := pieces.get()) is not None:
            yield piece
        thread.join()
        if "error" in box:
            raise box["error"]
        self.result = box["result"]


def answer_pieces(streamed: "Streamed[Any]", answer: Callable[[Any], str]) -> Iterator[str]:
    """The pieces of ``streamed`` as a reader sees them: leading whitespace dropped; when nothing streamed, the
    whole ``answer(result)`` once at the end."""
    shown = False
    for piece in streamed:
        if not shown:
            piece = piece.lstrip()
            if not piece:
                continue
        shown = True
        yield piece
    if not shown:
        text = answer(streamed.result)
        if text:
            yield text
