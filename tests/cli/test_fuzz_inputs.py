"""Random bytes and random JSON shapes as corpus files, QA datasets, training rows and configs: every case is a
counted skip or a one-line ``RagtuneError`` (a bad config value: pydantic's error, which the CLI prints on one
line), never another exception. Case counts are the ``max_examples`` below (see the closing note of issue 10)."""
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ragtune.config import Config
from ragtune.errors import RagtuneError

KEYS = ["data", "title", "paragraphs", "context", "qas", "question", "answers", "id", "_id", "text", "answer_start",
        "positive_ids", "positive_texts", "corpus", "rag", "k", "mode", "chunk_words"]
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5), max_leaves=25)
SUFFIXES = [".txt", ".md", ".html", ".json", ".jsonl", ".csv", ".tsv"]
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])



def near(shape: dict) -> st.SearchStrategy:
    """Objects of the expected shape whose fields are random: the mis-typed field, not the missing bracket, is
    what slips past a reader's first checks."""
    field = {k: st.one_of(v, v, v, json_values) for k, v in shape.items()}  # mostly right, a quarter anything
    required = dict(list(field.items())[:1])
    return st.fixed_dictionaries(required, optional=dict(list(field.items())[1:])) | st.fixed_dictionaries(field)


answer = near({"text": st.text(max_size=10), "answer_start": st.integers(-5, 50)})
qa = near({"id": st.text(max_size=5), "question": st.text(max_size=20), "answers": st.lists(answer, max_size=3)})
paragraph = near({"context": st.text(max_size=40), "qas": st.lists(qa, max_size=3)})
article = near({"title": st.text(max_size=10), "paragraphs": st.lists(paragraph, max_size=3)})
squad = near({"data": st.lists(article, max_size=3), "version": st.text(max_size=3)})
row = near({"question": st.text(max_size=20), "answers": st.lists(st.text(max_size=8), max_size=3),
            "positive_ids": st.lists(st.integers(-3, 10), max_size=3), "positive_texts": st.lists(st.text(max_size=8)),
            "id": st.text(max_size=5), "_id": st.text(max_size=5), "title": st.text(max_size=8), "text": st.text(max_size=30)})
file_contents = (st.binary(max_size=400)
                 | (json_values | squad).map(lambda v: json.dumps(v).encode())
                 | st.lists(json_values | row, max_size=5).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()))


class Scratch:
    """A fresh folder per example (hypothesis reruns a test body many times in one pytest call)."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="ragtune-fuzz-"))
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@FUZZ
@given(content=file_contents, suffix=st.sampled_from(SUFFIXES))
def test_corpus_file_is_indexed_or_counted_as_skipped(content, suffix):
    from ragtune.retrieval.update import update

    with Scratch() as tmp:
        docs = tmp / "docs"
        docs.mkdir()
        (docs / "anchor.txt").write_text("Albatrosses glide over the southern ocean.", encoding="utf-8")
        (docs / f"fuzz{suffix}").write_bytes(content)
        report = update(tmp / "idx", [docs])
        assert report.files_read + len(report.skipped) == 2
        assert all(path.endswith(f"fuzz{suffix}") for path, _ in report.skipped)
        assert report.passages_total >= 1


@FUZZ
@given(content=file_contents, suffix=st.sampled_from([".json", ".jsonl"]))
def test_qa_dataset_loads_or_is_one_line_error(content, suffix):
    from ragtune.evaluation.qa import load_qa_dataset

    with Scratch() as tmp:
        path = tmp / f"dev{suffix}"
        path.write_bytes(content)
        try:
            rows = load_qa_dataset(path)
        except RagtuneError as e:
            assert str(e).strip()
        else:
            assert rows and all(r.question.strip() for r in rows)


@FUZZ
@given(content=file_contents)
def test_training_rows_load_or_are_one_line_error(content):
    from ragtune.training.data import load_examples

    with Scratch() as tmp:
        path = tmp / "train.jsonl"
        path.write_bytes(content)
        try:
            rows, report = load_examples(path)
        except RagtuneError as e:
            assert str(e).strip()
        else:
            assert rows and report.examples == len(rows)


SECTIONS = list(Config.model_fields)
toml_scalar = (st.integers(-10**6, 10**6).map(str) | st.floats(allow_nan=False, allow_infinity=False).map(repr)
               | st.booleans().map(lambda b: str(b).lower()) | st.text(max_size=12).map(json.dumps))
toml_docs = st.lists(st.tuples(st.sampled_from(SECTIONS + ["bogus"]),
                               st.dictionaries(st.sampled_from(KEYS + ["variant", "k1", "encoder", "seed"]), toml_scalar,
                                               max_size=3)), max_size=4).map(
    lambda secs: "\n".join(f"[{name}]\n" + "\n".join(f"{k} = {v}" for k, v in body.items()) for name, body in secs).encode())


@FUZZ
@given(content=st.binary(max_size=300) | toml_docs)
def test_config_loads_or_is_one_line_error(content):
    with Scratch() as tmp:
        path = tmp / "ragtune.toml"
        path.write_bytes(content)
        try:
            cfg = Config.load(path)
        except RagtuneError as e:
            assert str(e).strip()
        except ValidationError as e:
            assert e.errors()  # main() prints the first three on one line
        else:
            assert isinstance(cfg, Config)
