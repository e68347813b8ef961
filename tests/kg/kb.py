"""A small invented knowledge graph (two families, places, a ship that shares a name, a Chinese part) and
questions of one, two and three hops with their gold answers and relation chains."""
from __future__ import annotations

from pathlib import Path

TRIPLES = [
    ("aldo_brenn", "spouse", "mira_kessel"),
    ("aldo_brenn", "nationality", "ostmark"),
    ("aldo_brenn", "children", "tobin_brenn"),
    ("mira_kessel", "nationality", "veltria"),
    ("mira_kessel", "children", "tobin_brenn"),
    ("tobin_brenn", "place_of_birth", "harlow_city"),
    ("tobin_brenn", "gender", "male"),
    ("harlow_city", "located_in", "veltria"),
    ("harlow", "located_in", "ostmark"),
    ("veltria", "capital", "port_sabine"),
    ("ostmark", "capital", "lund_keep"),
    ("Mira_Kessel", "located_in", "ostmark"),  # a ship: the same name as the person, written differently
    ("kara_voss", "spouse", "emil_dorn"),
    ("kara_voss", "nationality", "veltria"),
    ("kara_voss", "children", "lina_dorn"),
    ("emil_dorn", "nationality", "ostmark"),
    ("emil_dorn", "place_of_birth", "port_sabine"),
    ("lina_dorn", "place_of_birth", "lund_keep"),
    ("lina_dorn", "gender", "female"),
    ("port_sabine", "located_in", "veltria"),
    ("lund_keep", "located_in", "ostmark"),
    ("李白", "朋友", "杜甫"),
    ("李白", "出生地", "碎叶城"),
    ("杜甫", "出生地", "巩县"),
    ("巩县", "所属", "河南"),
    ("碎叶城", "所属", "西域"),
    ("杜甫草堂", "所在地", "成都"),
]

# (question, gold answers, gold chain text)
QUESTIONS = [
    ("what is the nationality of aldo_brenn ?", ["ostmark"], "[nationality]"),
    ("what is the nationality of aldo_brenn 's spouse ?", ["veltria"], "[nationality of spouse]"),
    ("what is the capital of the nationality of aldo_brenn 's spouse ?", ["port_sabine"], "[capital of nationality of spouse]"),
    ("what is the place_of_birth of mira_kessel 's children ?", ["harlow_city"], "[place of birth of children]"),
    ("where is the place_of_birth of kara_voss 's children located_in ?", ["ostmark"], "[located in of place of birth of children]"),
    ("what is the gender of emil_dorn 's spouse 's children ?", ["female"], "[gender of children of inverse spouse]"),
    ("李白的朋友的出生地是哪里？", ["巩县"], "[出生地 of 朋友]"),
    ("李白的朋友的出生地所属哪里？", ["河南"], "[所属 of 出生地 of 朋友]"),
]


def write_kb(path: Path, triples=TRIPLES, sep: str = "\t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(t) + "\n" for t in triples), encoding="utf-8")
    return path


def write_questions(path: Path) -> Path:
    import json

    path.write_text("".join(json.dumps({"question": q, "answers": a, "positive_texts": [c]}, ensure_ascii=False) + "\n"
                            for q, a, c in QUESTIONS), encoding="utf-8")
    return path


SPARSE = {"w_sparse": 5.0}  # deterministic tests: relation words decide, the random tiny encoder barely counts


def tiny_encoder(out: Path) -> Path:
    from tests.helpers.tiny_encoder import tiny_encoder_dir

    texts = [q for q, _, _ in QUESTIONS] + [" ".join(t).replace("_", " ") for t in TRIPLES] + [c for _, _, c in QUESTIONS]
    return tiny_encoder_dir(out, texts, hidden=32, layers=1, vocab_size=300)
