"""Prompt templates: passages numbered [1]..[k] with titles, an optional dialogue history, then the question.

A template is a ``str.format`` string over three fields: ``{passages}``, ``{history}`` and ``{question}``. Both
extra fields render to "" when empty, so one template serves open-book, closed-book and chat use. The chat
template of the model (when it has one) is applied later, by the generator, around the whole rendered prompt.
"""
from __future__ import annotations

from typing import Sequence

from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError

DEFAULT_TEMPLATE = (
    "Answer the question using the passages below. Reply with a short answer only (a few words), "
    "not a sentence.\n\n{passages}{history}Question: {question}\nAnswer:"
)
# Without passages the instruction must not refer to them, or small models answer "the passages do not say".
CLOSED_BOOK_TEMPLATE = "Answer the question with a short answer only (a few words), not a sentence.\n\n{history}Question: {question}\nAnswer:"

# A dialogue reply, not a short answer: used for chat turns (``[chat] template`` replaces it).
DIALOGUE_TEMPLATE = (
    "Continue the conversation with one reply. Use the knowledge below where it helps and say what it says.\n\n"
    "{passages}{history}User: {question}\nAssistant:"
)
# A reply ends where the model starts writing the user's next turn (the template's own turn marker; a small model
# may write it first thing, with no newline before it).
DIALOGUE_STOP = "User:"
# "Condense question": a follow-up made standalone, so retrieval can read it without the conversation.
REWRITE_TEMPLATE = (
    "Rewrite the user's last message as one standalone question that names what it is about.\n\n"
    "{history}Last message: {question}\nStandalone question:"
)

FIELDS = ("passages", "history", "question")


def format_passages(passages: Sequence[Passage]) -> str:
    """``[i] title\\ntext`` blocks, numbered from 1, so an answer can cite ``[i]``."""
    blocks = []
    for i, p in enumerate(passages, 1):
        head = f"[{i}] {p.title}\n" if p.title else f"[{i}] "
        blocks.append(head + p.text.strip())
    return "\n\n".join(blocks) + "\n\n" if blocks else ""


def format_history(history: Sequence[tuple[str, str]]) -> str:
    if not history:
        return ""
    turns = "\n".join(f"User: {u}\nAssistant: {a}" for u, a in history)
    return f"Conversation so far:\n{turns}\n\n"


def check_template(template: str) -> str:
    """Fail early, with the fix, on a template that would raise at the first question."""
    try:
        template.format(passages="", history="", question="")
    except (KeyError, IndexError, ValueError) as e:
        raise RagtuneError(
            f"bad prompt template ({e!r}); use only the fields {{passages}}, {{history}}, {{question}} and double other braces"
        ) from None
    if "{question}" not in template:
        raise RagtuneError("prompt template has no {question} field; add one")
    return template


def build_prompt(
    question: str,
    passages: Sequence[Passage] = (),
    history: Sequence[tuple[str, str]] = (),
    template: str | None = None,
) -> str:
    if template is None:
        template = DEFAULT_TEMPLATE if passages else CLOSED_BOOK_TEMPLATE
    return template.format(passages=format_passages(passages), history=format_history(history), question=question.strip())
