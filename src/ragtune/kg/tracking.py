"""Entity tracking over a conversation: which KB entities are in play at the current turn.

The thing a turn is about is usually named turns earlier ("do you know its address?"). Each utterance is linked
(``kg.linking``); an entity's weight is its link score times ``decay`` per utterance back (the current message is
0 back), and the best of its mentions counts. An entity the KB states no facts about (it only appears as an
object: a price, an opening time) rarely is what the conversation is about, so it weighs ``object_weight``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Tracked:
    entity: int
    score: float
    age: int  # utterances back from the current message (0: the message itself)


def recency_weight(link_score: float, age: int, decay: float, has_facts: bool, object_weight: float) -> float:
    """link x decay^age, x object_weight for an entity with no facts of its own."""
    return link_score * decay ** age * (1.0 if has_facts else object_weight)


def track_entities(link: Callable[[str], Sequence[Any]], utterances: Sequence[str], *, has_facts: Callable[[int], bool],
                   decay: float, object_weight: float, lookback: int, top: int) -> list[Tracked]:
    """The ``top`` entities of a conversation, best first. ``utterances`` run oldest first and end with the current
    message; only it and the ``lookback`` before it are read. ``link(text)`` returns ``kg.linking.Link``s."""
    best: dict[int, Tracked] = {}
    recent = list(utterances)[-(lookback + 1):]
    for age, text in enumerate(reversed(recent)):
        if not text:
            continue
        for l in link(text):
            s = recency_weight(l.score, age, decay, has_facts(l.entity), object_weight)
            if l.entity not in best or best[l.entity].score < s:
                best[l.entity] = Tracked(l.entity, s, age)
    return sorted(best.values(), key=lambda t: (-t.score, t.age, t.entity))[:top]
