"""Chat history as the RAG model reads it: (user, assistant) turns before the current question.

``ragtune chat`` keeps turns as it goes; an OpenAI-style client sends the whole conversation as messages.
``split_messages`` turns the latter into the former, so both faces hand ``RAG`` the same history (which then
shapes the retrieval query, ``RAG.chat_query``, and the prompt).
"""
from __future__ import annotations

from typing import Sequence

from ragtune.errors import RagtuneError

Turn = tuple[str, str]


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
