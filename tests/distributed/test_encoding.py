"""Dense encoding on a pool of Ray actors equals the single-process Encoder, vector for vector."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ragtune.retrieval.index import Index

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def texts(beir_dir):
    rows = [json.loads(line) for line in (beir_dir / "corpus.jsonl").read_text().splitlines()]
    return [r["title"] + "\n" + r["text"] for r in rows]


def test_ray_pool_equals_single_process(config, texts, ray_local):
    from ragtune.distributed.encoding import encode_passages
    from ragtune.retrieval.dense import Encoder

    enc = Encoder.from_config(config.dense.model_copy(update={"batch_size": 16}))
    want = enc.encode_passages(texts)
    got = encode_passages(enc, texts, "local", workers=2, batches_per_task=2)  # 8 chunks over 2 actors
    assert got.shape == want.shape and np.abs(want).sum() > 0
    np.testing.assert_array_equal(got, want)


def test_workers_write_the_vectors_into_a_shared_file(config, texts, ray_local, tmp_path):
    from ragtune.distributed.encoding import encode_passages
    from ragtune.retrieval.dense import Encoder

    enc = Encoder.from_config(config.dense.model_copy(update={"batch_size": 16}))
    want = enc.encode_passages(texts)
    path = tmp_path / "vectors.npy"
    got = encode_passages(enc, texts, "local", workers=2, batches_per_task=2, out=path)
    assert isinstance(got, np.memmap) and got.filename == str(path.resolve())  # the result is the workers' file
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.load(path), want)


def test_index_dense_with_ray_equals_single(tmp_path, beir_dir, config, queries, indexes, ray_local, monkeypatch):
    from ragtune.distributed import encoding
    from ragtune.retrieval.update import update

    monkeypatch.setenv("RAGTUNE_RAY_ENCODE_WORKERS", "2")
    written = []
    encode = encoding.encode_passages

    def spy(*a, out=None, **kw):
        vecs = encode(*a, out=out, **kw)
        written.append((out, len(vecs)))
        return vecs

    monkeypatch.setattr(encoding, "encode_passages", spy)
    idx = tmp_path / "ray-encoded"
    update(idx, beir=[beir_dir], retrievers=["dense"], config=config, shards=2, ray="local")
    assert len(written) == 1 and written[0][1] == 240 and "staging" in str(written[0][0])  # workers wrote into staging
    assert not (idx / "encoding").exists()  # and the file went before the swap
    with Index.open(indexes[1]) as single, Index.open(idx) as ray_built:
        want, got = single.retriever("dense").search(queries, 10), ray_built.retriever("dense").search(queries, 10)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)
