"""Grouping rows of different lengths into transformer forward passes with little padding."""
from __future__ import annotations

from typing import Sequence


def length_buckets(lengths: Sequence[int], max_rows: int, slack: float = 1.15, max_tokens: int | None = None) -> list[list[int]]:
    """Row indices grouped into forward passes of similar length, shortest first.

    A padded batch costs rows x longest row; RAG's k passage prompts differ in length by 2x and more, so one
    batch of them spends a third of its compute on padding. Rows sorted by length join the current group while
    its padded size stays within ``slack`` of its real tokens and it has fewer than ``max_rows`` rows, and, with
    ``max_tokens``, while its padded size stays within that many tokens (a longer row is a group of its own):
    a forward pass's temporary memory grows with its padded size.
    """
    groups: list[list[int]] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        g = groups[-1] if groups else None
        padded = (len(g) + 1) * lengths[i] if g is not None else 0
        if (g is not None and len(g) < max_rows and padded <= slack * (total + lengths[i])
                and (max_tokens is None or padded <= max_tokens)):
            g.append(i)
            total += lengths[i]
        else:
            groups.append([i])
            total = lengths[i]
    return groups


def input_order(groups: Sequence[Sequence[int]]) -> list[int]:
    """Positions that put rows concatenated group by group (as ``length_buckets`` gives them) back into input
    order: ``concatenated[input_order(groups)]``."""
    inverse = [0] * sum(len(g) for g in groups)
    for pos, i in enumerate(i for g in groups for i in g):
        inverse[i] = pos
    return inverse
