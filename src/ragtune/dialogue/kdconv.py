"""KdConv (Zhou et al., ACL 2020) conversations as training examples for knowledge-grounded response generation.

A conversation file is a JSON list of ``{"messages": [{"message": str, "attrs"?: [{"name", "attrname",
"attrvalue"}]}, ...]}``; ``attrs`` on a message are the knowledge-base triples (entity, relation, value) that
utterance uses. The knowledge-base file is ``{entity: [[subject, relation, object], ...]}``.

Each message after the first is a response to answer: the previous message is the question, everything
before it is history paired into (user, assistant) turns the way chat templates expect them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import RagtuneError

Triple = tuple[str, str, str]


@dataclass(frozen=True)
class DialogueExample:
    conversation: int  # index of the conversation in its file
    turn: int  # index of the response in the conversation's messages (>= 1)
    history: tuple[tuple[str, str], ...]  # (user, assistant) turns before ``message``, oldest first
    message: str  # the utterance the response answers: messages[turn - 1]
    response: str  # messages[turn]
    knowledge: tuple[Triple, ...]  # the response's attrs as (name, attrname, attrvalue), in order, de-duplicated

    def to_row(self) -> dict:
        """The training row: JSON-ready lists, one gold answer."""
        return {
            "question": self.message,
            "history": [[u, a] for u, a in self.history],
            "answers": [self.response],
            "knowledge": [[s, r, o] for s, r, o in self.knowledge],
        }


def pair_history(previous: list[str]) -> tuple[tuple[str, str], ...]:
    """Messages before the question as (user, assistant) turns.

    Paired from the end because the message just before the question is the assistant's (speakers alternate
    and the question is the user's); an odd count leaves the first message unanswered: ``(m0, "")``.
    """
    pairs = [(previous[i - 1], previous[i]) for i in range(len(previous) - 1, 0, -2)]
    if len(previous) % 2:
        pairs.append((previous[0], ""))
    return tuple(reversed(pairs))


def _read_json(path: str | Path, what: str) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RagtuneError(f"{what} {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RagtuneError(f"{what} {p} is unreadable: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RagtuneError(f"{what} {p} is not JSON ({e.msg} at line {e.lineno})") from None


def _knowledge(attrs: Any) -> tuple[Triple, ...]:
    """A message's attrs as de-duplicated triples; raises ValueError naming what is wrong."""
    if attrs is None:
        return ()
    if not isinstance(attrs, list):
        raise ValueError(f"attrs is {type(attrs).__name__}, not a list")
    out: dict[Triple, None] = {}  # a dict keeps first-seen order while dropping repeats
    for a in attrs:
        if not isinstance(a, dict):
            raise ValueError(f"an attr is {type(a).__name__}, not an object")
        s, r, o = a.get("name"), a.get("attrname"), a.get("attrvalue")
        if not (isinstance(s, str) and isinstance(r, str) and isinstance(o, str)):
            raise ValueError("an attr lacks a string name, attrname or attrvalue")
        out[(s, r, o)] = None
    return tuple(out)


def _messages(conv: Any) -> list[tuple[str, tuple[Triple, ...]]]:
    """A conversation's (text, knowledge) per message; raises ValueError naming what is wrong."""
    if not isinstance(conv, dict) or not isinstance(conv.get("messages"), list):
        raise ValueError("not an object with a messages list")
    out = []
    for i, m in enumerate(conv["messages"]):
        if not isinstance(m, dict) or not isinstance(m.get("message"), str):
            raise ValueError(f"message {i} is not an object with a string message")
        try:
            out.append((m["message"], _knowledge(m.get("attrs"))))
        except ValueError as e:
            raise ValueError(f"message {i}: {e}") from None
    return out


def load_kdconv(path: str | Path, *, with_knowledge_only: bool = True,
                problems: list[str] | None = None) -> list[DialogueExample]:
    """One example per message after the first of each conversation, in file order.

    ``with_knowledge_only`` keeps only responses with non-empty attrs (the knowledge-grounded ones). A
    malformed conversation is skipped whole, since one bad message would shift every later turn's history;
    it is described in ``problems`` when given, otherwise it raises ``RagtuneError``.
    """
    data = _read_json(path, "KdConv file")
    if not isinstance(data, list):
        raise RagtuneError(f"KdConv file {path} holds {type(data).__name__}, not a list of conversations")
    examples: list[DialogueExample] = []
    for c, conv in enumerate(data):
        try:
            messages = _messages(conv)
        except ValueError as e:
            msg = f"{path}: conversation {c}: {e}"
            if problems is None:
                raise RagtuneError(msg) from None
            problems.append(msg)
            continue
        texts = [text for text, _ in messages]
        for t in range(1, len(messages)):
            response, knowledge = messages[t]
            if with_knowledge_only and not knowledge:
                continue
            examples.append(DialogueExample(conversation=c, turn=t, history=pair_history(texts[:t - 1]),
                                            message=texts[t - 1], response=response, knowledge=knowledge))
    return examples


def kb_triples(path: str | Path) -> list[Triple]:
    """The knowledge base's triples across all entities, exact duplicates removed, first occurrence kept.

    Removing them matters for retrieval: the travel KB lists some triples more than once under the same entity
    (12,509 listed, 10,968 distinct), and an indexed copy would crowd the top-k with identical passages."""
    data = _read_json(path, "KdConv knowledge base")
    if not isinstance(data, dict):
        raise RagtuneError(f"KdConv knowledge base {path} holds {type(data).__name__}, not an object of entities")
    out: dict[Triple, None] = {}
    for entity, triples in data.items():
        if not isinstance(triples, list):
            raise RagtuneError(f"KdConv knowledge base {path}: entity {entity!r} has no list of triples")
        for t in triples:
            if not (isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) for x in t)):
                raise RagtuneError(f"KdConv knowledge base {path}: entity {entity!r} has a triple that is not "
                                   f"three strings: {str(t)[:80]}")
            out[(t[0], t[1], t[2])] = None
    return list(out)
