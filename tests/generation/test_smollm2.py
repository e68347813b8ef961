"""The packaged SmolLM2-135M-Instruct answers from a passage it is given (slow: loads the real model)."""
from __future__ import annotations

import pytest

from ragtune.corpus.types import Passage
from ragtune.generation import Generator
from ragtune.rag.model import RAG
from tests.rag.fakes import DictStore, FakeRetriever

pytestmark = pytest.mark.slow

PASSAGES = [
    Passage(1, "bridge", "The Varnholm Bridge over the river Lesk was opened to traffic on 14 March 1923, after six years of work.",
            "Varnholm Bridge"),
    Passage(2, "tea", "Green tea is made from the leaves of Camellia sinensis.", "Green tea"),
]


@pytest.fixture(scope="module")
def smol() -> Generator:
    return Generator("smollm2-135m-instruct", max_new_tokens=16)


def test_smollm2_answers_from_the_passage(smol: Generator):
    rag = RAG(FakeRetriever(PASSAGES), smol, DictStore(PASSAGES), k=2)
    out = rag.ask("In which year was the Varnholm Bridge opened?")
    assert "1923" in out.answer
    assert out.citations[0].doc_id == "bridge" and out.citations[0].posterior > 0.5
    # the answer the passage supports is more likely than one it does not
    right, wrong = rag.loglik(["In which year was the Varnholm Bridge opened?"] * 2, ["1923", "1850"], mode="rag-sequence")
    assert float(right) > float(wrong)


def test_smollm2_streams_and_uses_its_chat_template(smol: Generator):
    assert smol.render("hi").startswith("<|im_start|>")
    prompt = smol.build_prompt("In which year was the Varnholm Bridge opened?", PASSAGES[:1])
    assert "".join(smol.stream(prompt)).strip() == smol.generate([prompt])[0].text
