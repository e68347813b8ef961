"""A small synthetic world (index + tiny encoder + tiny generator) shared by the trainer tests."""
from __future__ import annotations

import json

import pytest

from tests.training.synthetic import PROMPT, make_kb, write_corpus


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    from ragtune.config import Config
    from ragtune.retrieval.update import update
    from tests.helpers.tiny_encoder import tiny_encoder_dir
    from tests.helpers.tiny_lm import tiny_causal_lm

    root = tmp_path_factory.mktemp("small_world")
    kb = make_kb(30, 10)
    enc = tiny_encoder_dir(root / "enc", kb.texts(), hidden=32, layers=1, vocab_size=300)
    lm = tiny_causal_lm(root / "lm", kb.texts(), hidden=32, layers=1, vocab_size=300)
    write_corpus(kb, root / "corpus" / "kb.jsonl")
    cfg = Config().updated(
        corpus={"chunk_words": 0}, dense={"encoder": str(enc)},
        generator={"model": str(lm), "prompt_template": PROMPT, "max_new_tokens": 3},
        rag={"mode": "rag-sequence", "k": 3, "doc_temperature": 0.05, "retriever": "dense"},
    )
    update(root / "index", [root / "corpus"], retrievers=["dense"], config=cfg)
    return {"root": root, "kb": kb, "cfg": cfg, "lm": lm, "train": kb.rows("train"), "dev": kb.rows("dev")}


def make_rag(world):
    from ragtune.rag.model import RAG

    return RAG.from_index(world["root"] / "index", retriever="dense", config=world["cfg"])


def world_toml(path, world):
    """A ragtune.toml for the small world's models (what a user of `ragtune train --config` writes)."""
    g = world["cfg"].generator
    path.write_text(
        "[generator]\n"
        f"model = {json.dumps(g.model)}\nprompt_template = {json.dumps(g.prompt_template)}\nmax_new_tokens = 3\n"
        "[rag]\nk = 3\ndoc_temperature = 0.05\nretriever = \"dense\"\n"
        "[training]\nbatch_size = 4\neval_every = 2\nsave_every = 2\nlr = 0.001\n"
    )
    return path
