"""Chat history as the RAG model reads it: (user, assistant) turns before the current message, and the retrieval
query a turn is answered from.

``ragtune chat`` keeps turns as it goes; an OpenAI-style client sends the whole conversation as messages.
``split_messages`` turns the latter into the former, so both faces hand ``RAG`` the same history.

The query of a turn (``[chat] query``):

* ``last-turn``: the message alone;
* ``joined``: the last user turns joined to the message (a follow-up's topic is usually in them);
* ``history``: the KB entities in play (``kg.tracking``: linked over the conversation, recent ones weighing
  more) are the topics a path retriever starts from, and their names are added to the text other retrievers
  read; an index without triples falls back to ``joined``;
* ``rewrite``: as ``history``, with the message first rewritten by the generator into a standalone question
  ("condense question"); the rewrite is shown with the answer.

A turn may also take no knowledge (``without_weak_knowledge``, ``[chat] min_knowledge``), and every chat answer
shows what it retrieved with (``retrieval_info``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ragtune.errors import RagtuneError

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.retrieval.base import Hits

Turn = tuple[str, str]


class ChatQuery(str):
    """A turn's retrieval query: the text retrievers read, plus ``topics`` ((entity name, weight), best first) for a
    path retriever, which starts its search from them instead of linking the text, and ``rewrite``, the
    generator's standalone question when one was made. A ``str``, so every retriever accepts it unchanged."""

    topics: tuple[tuple[str, float], ...] | None  # None: the path retriever links the text itself
    rewrite: str | None
    max_hops: int | None

    def __new__(cls, text: str, topics: Sequence[tuple[str, float]] | None = None, rewrite: str | None = None,
                max_hops: int | None = None) -> "ChatQuery":
        q = super().__new__(cls, text)
        q.topics, q.rewrite, q.max_hops = None if topics is None else tuple(topics), rewrite, max_hops
        return q


def split_messages(messages: Sequence[tuple[str, str]]) -> tuple[str, list[Turn]]:
    """``(role, content)`` messages -> ``(question, history)``: the last user message is the question, the
    earlier ones pair with the assistant replies that follow them. System and tool messages are dropped;
    consecutive messages of one role are joined with a blank line; a user message left unanswered before
    another user message joins it."""
    merged: list[list[str]] = []
    for role, content in messages:
        if role not in ("user", "assistant"):
            continue
        text = (content or "").strip()
        if merged and merged[-1][0] == role:
            merged[-1][1] = f"{merged[-1][1]}\n\n{text}".strip()
        else:
            merged.append([role, text])
    if not merged or merged[-1][0] != "user":
        raise RagtuneError("the last message must be the user's question")
    question = merged[-1][1]
    if not question:
        raise RagtuneError("the question is empty")
    history: list[Turn] = []
    for i, (role, text) in enumerate(merged[:-1]):
        if role == "user":
            reply = merged[i + 1][1] if merged[i + 1][0] == "assistant" else ""
            history.append((text, reply))
    return question, history


def utterances(history: Sequence[Turn], message: str) -> list[str]:
    """The conversation as a flat list, oldest first, ending with ``message``; empty turns left out."""
    return [t for u, a in history for t in (u, a) if t] + [message]


def joined_query(message: str, history: Sequence[Turn], turns: int = 2) -> str:
    """The last ``turns`` user turns and the message, joined."""
    return " ".join([u for u, _ in list(history)[-turns:] if u] + [message])


def conversation_query(message: str, history: Sequence[Turn], chat: Any, graph: Any = None, linker: Any = None,
                       rewrite: str | None = None) -> str:
    """The retrieval query of one turn under ``chat`` (a ``config.ChatConfig``); ``graph`` and ``linker`` are the
    index's (None without triples), ``rewrite`` the generator's standalone question for ``chat.query == "rewrite"``. A path search from the tracked
    entities goes at most ``chat.max_hops`` steps: a conversation walks the graph a hop a turn (the neighbour named
    in one reply is tracked as the next turn's topic), so a reply's fact is near an entity in play."""
    if chat.query == "last-turn":
        return ChatQuery(message, max_hops=chat.max_hops)
    if chat.query == "joined" or linker is None:
        return ChatQuery(joined_query(message, history) if history else message, max_hops=chat.max_hops)
    from ragtune.kg.tracking import track_entities

    current = rewrite or message
    tracked = track_entities(linker.link, utterances(history, current), has_facts=graph.has_facts, decay=chat.decay,
                             object_weight=chat.object_weight, lookback=chat.lookback, top=chat.max_entities)
    names = [graph.display(t.entity) for t in tracked]
    extra = [n for n in names if n not in current]
    return ChatQuery(" ".join([current, *extra]), [(graph.names[t.entity], t.score) for t in tracked], rewrite, chat.max_hops)


def without_weak_knowledge(hits: "Hits", min_score: float, rows: Any = None) -> "Hits":
    """The "no knowledge" option of a chat turn: a row (of ``rows``, a bool mask; all by default) whose best
    retrieval score is below ``min_score`` keeps no passage (the reply is then made from the conversation alone)."""
    import numpy as np

    from ragtune.retrieval.base import EMPTY_ID

    best = np.where(hits.ids != EMPTY_ID, np.nan_to_num(hits.scores, nan=-np.inf), -np.inf).max(axis=1, initial=-np.inf)
    weak = best < min_score
    if rows is not None:
        weak &= rows
    if weak.any():
        hits.ids[weak] = EMPTY_ID
        hits.scores[weak] = -np.inf
    return hits


def retrieval_info(query: str) -> dict[str, Any]:
    """What a chat turn retrieved with: the query text, the rewrite and the tracked entities (``ChatQuery``)."""
    out: dict[str, Any] = {"query": str(query)}
    if getattr(query, "rewrite", None):
        out["rewrite"] = query.rewrite
    if getattr(query, "topics", None) is not None:
        out["entities"] = [[n, round(float(s), 4)] for n, s in query.topics]
    return out
