"""Fixtures of the distributed tests: a small synthetic BEIR corpus, indexes built from it, a local Ray."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

WORDS = ("apple river stone cloud tower music paper light engine forest garden planet ocean window bridge "
         "mountain silver copper winter summer market castle island desert valley harbor signal crystal "
         "thunder meadow lantern voyage spiral canyon falcon glacier orchid pepper saddle timber velvet").split()


def make_beir(root: Path, n_docs: int = 240, n_queries: int = 24, seed: int = 7) -> Path:
    """A BEIR folder whose documents are random word strings with repeats (so BM25 scores tie sometimes and
    document lengths vary widely), queries drawn from documents, qrels pointing at their source document."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs = []
    for i in range(n_docs):
        words = [rng.choice(WORDS[: 10 + i % 30]) for _ in range(rng.randint(3, 40))]
        docs.append({"_id": f"d{i}", "title": rng.choice(WORDS).title(), "text": " ".join(words)})
    with open(root / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    with open(root / "queries.jsonl", "w") as fq, open(root / "qrels" / "test.tsv", "w") as fr:
        fr.write("query-id\tcorpus-id\tscore\n")
        for q in range(n_queries):
            d = docs[rng.randrange(n_docs)]
            words = d["text"].split()
            fq.write(json.dumps({"_id": f"q{q}", "text": " ".join(rng.sample(words, min(4, len(words))))}) + "\n")
            fr.write(f"q{q}\t{d['_id']}\t1\n")
    return root


@pytest.fixture(scope="session")
def beir_dir(tmp_path_factory) -> Path:
    return make_beir(tmp_path_factory.mktemp("beir") / "synth")


@pytest.fixture(scope="session")
def queries(beir_dir) -> list[str]:
    qs = [json.loads(line)["text"] for line in (beir_dir / "queries.jsonl").read_text().splitlines()]
    return qs + ["apple", "nothingmatcheshere", "river river river stone"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from tests.distributed.conftest import WORDS as words
    from tests.helpers.tiny_encoder import DEFAULT_TEXTS, tiny_encoder_dir

    return tiny_encoder_dir(tmp_path_factory.mktemp("tiny-bert"), list(DEFAULT_TEXTS) + [" ".join(words)])


@pytest.fixture(scope="session")
def config(tiny_model):
    from ragtune.config import Config

    return Config().updated(dense={"encoder": str(tiny_model)})


@pytest.fixture(scope="session")
def indexes(tmp_path_factory, beir_dir, config) -> dict[int, Path]:
    """The same corpus indexed with bm25, tfidf and dense, as a single index and with 2 and 3 shards."""
    from ragtune.retrieval.update import update

    root = tmp_path_factory.mktemp("idx")
    out = {}
    for n in (1, 2, 3):
        out[n] = root / f"shards{n}"
        update(out[n], beir=[beir_dir], retrievers=["bm25", "tfidf", "dense"], config=config,
               shards=None if n == 1 else n)
    return out


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray for the whole session, as CI runs it: 2 CPUs, no dashboard, a small object store."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200_000_000, log_to_driver=False,
                 namespace="ragtune")
    yield ray
    ray.shutdown()
