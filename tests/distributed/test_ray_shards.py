"""Shards served by Ray actors: the same hits as the single index, a killed actor restarted, clear errors."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from ragtune.errors import RagtuneError
from ragtune.retrieval.index import Index

pytest.importorskip("ray")


@pytest.fixture
def through_ray(ray_local, monkeypatch):
    monkeypatch.setenv("RAGTUNE_RAY", "local")  # what --ray does; the session's Ray is already up
    return ray_local


@pytest.mark.parametrize("kind", ["bm25", "tfidf", "dense"])
def test_ray_hits_equal_single(indexes, queries, through_ray, kind):
    from ragtune.distributed.ray_shards import RayShardedRetriever

    with Index.open(indexes[1]) as single, Index.open(indexes[2]) as sharded:
        r = sharded.retriever(kind)
        assert isinstance(r, RayShardedRetriever) and len(r.parts) == 2
        want, got = single.retriever(kind).search(queries, 10), r.search(queries, 10)
        assert (want.ids >= 0).sum() >= 10 * (len(queries) - 1)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)
        if kind == "dense":
            v = r.search(queries[:3], 4, return_vectors=True)
            np.testing.assert_array_equal(v.vectors, single.retriever(kind).search(queries[:3], 4, return_vectors=True).vectors)


def test_killed_actor_is_restarted_and_answer_exact(indexes, queries, through_ray):
    with Index.open(indexes[1]) as single, Index.open(indexes[2]) as sharded:
        r = sharded.retriever("bm25")
        want = single.retriever("bm25").search(queries, 10)
        before = r.actor_pids()
        os.kill(before[1], signal.SIGKILL)  # the shard process dies, as a crashed node would
        got = r.search(queries, 10)  # Ray restarts the actor (it reloads its shard) and retries the call
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)
        after = r.actor_pids()
        assert after[0] == before[0] and after[1] != before[1]


def test_killed_actor_mid_search(indexes, queries, through_ray):
    """An actor killed while a batch is in flight: the call is retried on the restarted actor."""
    import ray

    with Index.open(indexes[1]) as single, Index.open(indexes[3]) as sharded:
        r = sharded.retriever("tfidf")
        want = single.retriever("tfidf").search(queries * 40, 10)
        pid = r.actor_pids()[2]
        refs = [a.search.remote(list(queries * 40), 10) for a in r.parts]
        os.kill(pid, signal.SIGKILL)
        ray.get(refs, timeout=60)
        got = r.search(queries * 40, 10)
        np.testing.assert_array_equal(got.ids, want.ids)


def test_dead_shard_is_a_clear_error_not_a_hang(indexes, queries, through_ray):
    import ray

    with Index.open(indexes[2]) as sharded:
        r = sharded.retriever("bm25")
        ray.kill(r.parts[0], no_restart=True)
        t0 = time.monotonic()
        with pytest.raises(RagtuneError, match="shard 0 of the bm25 index"):
            r.search(queries, 5)
        assert time.monotonic() - t0 < 30


def test_timeout_names_the_shard(indexes, queries, through_ray):
    from ragtune.distributed.ray_shards import RayShardedRetriever

    class Slow:
        def search(self, q, k):
            time.sleep(5)

    import ray

    slow = ray.remote(num_cpus=0)(Slow).remote()
    r = RayShardedRetriever("bm25", [slow], [10], None, "the bm25 index at X", timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(RagtuneError, match="shard 0 of the bm25 index at X did not answer within 0.5 s"):
        r.search(["a"], 3)
    assert time.monotonic() - t0 < 3
    ray.kill(slow)


def test_without_ray_installed_one_line(monkeypatch):
    import builtins

    from ragtune.distributed.ray_shards import import_ray

    real = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RagtuneError, match=r"pip install 'ragtune\[ray\]'"):
        import_ray()
