"""KdConv (Zhou et al., ACL 2020) conversations as training examples for knowledge-grounded response generation.

A conversation file is a JSON list of ``{"messages": [{"message": str, "attrs"?: [{"name", "attrname",
"attrvalue"}]}, ...]}``; ``attrs`` on a message are the knowledge-base triples (entity, relation, value) that
utterance uses. The knowledge-base file (``{entity: [[subject, relation, object], ...]}``) is read as triples by
``ragtune index --triples`` (``kg.readers``).

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


def training_row(example: DialogueExample) -> dict:
    """``to_row`` plus ``positive_texts``: the one-step relation chains of the annotated triples, as the path
    retriever's scorer reads them (``kg.graph.chain_text``), so contrastive training has a positive per turn."""
    from ragtune.kg.graph import chain_text, relation_text

    chains = dict.fromkeys(chain_text([relation_text(r)]) for _, r, _ in example.knowledge)
    return example.to_row() | {"positive_texts": list(chains)}


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


def load_dialogue(path: str | Path, *, with_knowledge_only: bool = True, problems: list[str] | None = None) -> list[DialogueExample]:
    """Examples from a KdConv file (``.json``) or from the rows ``ragtune convert kdconv`` writes (``.jsonl``:
    ``{question, history, answers, knowledge}``, as ``DialogueExample.to_row``)."""
    if Path(path).suffix.lower() != ".jsonl":
        return load_kdconv(path, with_knowledge_only=with_knowledge_only, problems=problems)
    from ragtune.corpus.squad import read_jsonl_rows

    def bad(n: int, msg: str) -> None:
        if problems is None:
            raise RagtuneError(f"{path}: line {n}: {msg}")
        problems.append(f"{path}: line {n}: {msg}")

    rows = read_jsonl_rows(Path(path), _from_row, bad)
    return [r for r in rows if r.knowledge or not with_knowledge_only]


def _from_row(row: Any, n: int) -> DialogueExample:
    """A ``to_row`` row back as an example; raises ValueError naming what is wrong."""
    from ragtune.corpus.squad import parse_history

    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    message, answers = row.get("question"), row.get("answers")
    if not isinstance(message, str) or not isinstance(answers, list) or not answers or not isinstance(answers[0], str):
        raise ValueError("needs a string 'question' and a non-empty 'answers' list")
    history = parse_history(row.get("history", []))
    knowledge = row.get("knowledge", [])
    if not isinstance(knowledge, list) or not all(isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) for x in t) for t in knowledge):
        raise ValueError("'knowledge' must be a list of [subject, relation, object] triples")
    return DialogueExample(conversation=-1, turn=n, history=tuple(history), message=message,
                           response=answers[0], knowledge=tuple((s, r, o) for s, r, o in knowledge))
