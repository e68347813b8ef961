"""The micro-batching policy (pure) and the batcher that runs it."""
import asyncio
import time

import pytest

from ragtune.server.batching import Job, MicroBatcher, QueueFull, batch_key, next_batch, wait_left


def test_next_batch_takes_the_oldest_and_its_kind_in_order():
    assert next_batch([], 4) == []
    assert next_batch(["a", "b", "a", "a", "c", "a"], 3) == [0, 2, 3]
    assert next_batch(["b", "a", "b"], 8) == [0, 2]


def test_wait_left():
    assert wait_left([], 0.0, 4, 0.01) == float("inf")
    assert wait_left(["a"] * 4, 0.0, 4, 0.5) == 0.0  # full: go now
    assert wait_left(["a", "b", "a"], 0.1, 4, 0.5) == pytest.approx(0.4)
    assert wait_left(["a", "a"], 0.7, 4, 0.5) == 0.0  # waited long enough


def test_batch_key_ignores_none_and_order():
    assert batch_key({"k": 3, "mode": None, "stop": ["x"]}) == batch_key({"stop": ["x"], "k": 3})
    assert batch_key({"k": 3}) != batch_key({"k": 4})


def _job(q, **opts):
    return Job(q, (), opts, deadline=time.monotonic() + 30)


def test_batcher_groups_concurrent_jobs_and_bounds_the_queue():
    batches = []

    def run(jobs, sink):
        batches.append([j.question for j in jobs])
        time.sleep(0.05)
        for r in range(len(jobs)):
            sink.put(r, "x")
        return [j.question.upper() for j in jobs]

    async def main():
        b = MicroBatcher(run, max_batch=3, max_wait_ms=30, queue_size=5)
        jobs = [b.submit(_job(q, k=1 if q != "d" else 2)) for q in "abcde"]
        with pytest.raises(QueueFull):
            b.submit(_job("f"))
        results = {}
        for j in jobs:
            events = []
            while not events or events[-1][0] != "done":
                events.append(await j.events.get())
            results[j.question] = events
        await b.close()
        return results

    results = asyncio.run(main())
    # a, b, c share options and fill the first batch; d has its own k; e comes next
    assert batches == [["a", "b", "c"], ["d"], ["e"]]
    assert results["a"] == [("text", "x"), ("done", "A")]


def test_batcher_drops_cancelled_jobs_and_reports_errors():
    seen = []

    def run(jobs, sink):
        seen.extend(j.question for j in jobs)
        raise ValueError("bad option")

    async def main():
        b = MicroBatcher(run, max_batch=4, max_wait_ms=50, queue_size=8)
        gone, kept = b.submit(_job("gone")), b.submit(_job("kept"))
        gone.cancelled = True
        event = await kept.events.get()
        await b.close()
        return event

    kind, err = asyncio.run(main())
    assert seen == ["kept"] and kind == "error" and isinstance(err, ValueError)


def test_the_generation_thread_yields_the_cpu_to_searches():
    import os
    import threading

    if not hasattr(os, "setpriority"):
        pytest.skip("no per-thread priorities on this platform")
    seen = []

    def run(jobs, sink):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return [None for _ in jobs]

    async def main():
        b = MicroBatcher(run, max_batch=1, max_wait_ms=0, queue_size=2, worker_nice=7)
        job = b.submit(_job("q"))
        await job.events.get()
        await b.close()

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    asyncio.run(main())
    assert seen == [min(base + 7, 19)]
