"""A synthetic knowledge base the tests invent: entities nobody has heard of, one passage each, questions in
several templates. Nothing in it can be answered without retrieving the right passage, and every token is a
whole word for the tokenizers trained on it, so tiny random-init models can learn it in seconds."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ragtune.training.data import QAExample

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]
TEMPLATES = ["where does {n} live ?", "which town is home to {n} ?", "{n} lives in which town ?"]
PASSAGE = "{n} lives in {c} ."
PROMPT = "{passages}Q: {question}\nA:"


def _words(n: int, rng: random.Random, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(3))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


@dataclass
class KB:
    names: list[str]
    cities: list[str]  # cities[i] is where names[i] lives

    @property
    def passages(self) -> list[str]:
        return [PASSAGE.format(n=n, c=c) for n, c in zip(self.names, self.cities)]

    def rows(self, split: str, held_out: int = 0) -> list[QAExample]:
        """Training and dev questions.

        With ``held_out = 0`` entity i's dev question uses template i % 3 and its other templates are for
        training. With ``held_out = n`` the last n entities are dev only (all templates), so the generator cannot
        memorise their answers and must read them from the retrieved passage.
        """
        out = []
        n_train = len(self.names) - held_out
        for i, (n, c) in enumerate(zip(self.names, self.cities)):
            for t, tpl in enumerate(TEMPLATES):
                is_dev = (i >= n_train) if held_out else (t == i % len(TEMPLATES))
                if is_dev == (split == "dev"):
                    out.append(QAExample(tpl.format(n=n), [c], positive_texts=[PASSAGE.format(n=n, c=c)]))
        return out

    def texts(self) -> list[str]:
        """Everything the tokenizers should know as words."""
        return self.passages + [q.question for q in self.rows("train") + self.rows("dev")] + [PROMPT, "Q: A:"] * 5


def make_kb(n_entities: int = 50, n_cities: int = 25, seed: int = 0) -> KB:
    rng = random.Random(seed)
    taken: set[str] = set()
    names = _words(n_entities, rng, taken)
    cities = _words(n_cities, rng, taken)
    return KB(names, [rng.choice(cities) for _ in names])


def write_corpus(kb: KB, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, p in enumerate(kb.passages):
            f.write(json.dumps({"id": f"e{i}", "text": p}) + "\n")
    return path
