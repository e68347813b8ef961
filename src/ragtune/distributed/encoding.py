"""Dense encoding of a corpus on a pool of Ray actors, equal to the single-process ``Encoder``.

``Encoder.encode`` sorts texts by token length and runs batches of ``batch_size`` in that order; padding (and so
the float result) depends on which texts share a batch. The pool does the same sort once, here, and hands every
worker whole batches in that order (chunks of ``batch_size * batches_per_task`` texts), so each worker's own
stable sort keeps them and every batch is the one a single process would have run: the vectors are the same.
Each worker loads the encoder once (an actor). Given ``out`` (a ``.npy`` path on storage the workers share, as
the index directory already is for the shard actors), each worker writes its chunk's rows into that file itself
and returns only a count: the vectors never pass through the object store or the driver until the index is built
from the file. Without ``out``, workers return their chunks and the driver writes them into the result in place
(at most a few chunks in flight at a time).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ragtune.errors import RagtuneError

BATCHES_PER_TASK = 8


class EncodeWorker:
    """Actor body: an ``Encoder`` rebuilt from its settings (and optionally given weights), loaded once."""

    def __init__(self, spec: dict, state: Any = None, threads: int | None = None):
        import torch

        from ragtune.retrieval.dense import Encoder

        if threads:
            torch.set_num_threads(threads)
        self.encoder = Encoder.from_dict(spec)
        if state is not None:
            self.encoder.model.load_state_dict(state)
        self.encoder.model.eval()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode_passages(texts)

    def encode_into(self, texts: list[str], rows: np.ndarray, path: str) -> int:
        """Encode ``texts`` and write them as ``rows`` of the shared ``.npy`` file at ``path``."""
        vecs = self.encoder.encode_passages(texts)
        out = np.load(path, mmap_mode="r+")
        out[rows] = vecs
        out.flush()
        del out
        return len(rows)

    def pid(self) -> int:
        return os.getpid()


def length_order(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    """The order ``Encoder.encode`` runs ``texts`` in (by token length, longest first, stable)."""
    ids = encoder._tokenize([encoder.prefix("passage") + t for t in texts])
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    return np.argsort(-lengths, kind="stable")


def encode_passages(encoder: Any, texts: Sequence[str], address: str, *, workers: int | None = None,
                    batches_per_task: int = BATCHES_PER_TASK, timeout: float | None = None,
                    threads_per_worker: int | None = None, ship_weights: bool = False,
                    out: str | os.PathLike | None = None) -> np.ndarray:
    """(n, d) float32 passage vectors of ``texts`` by ``encoder``, encoded by ``workers`` Ray actors (default
    ``$RAGTUNE_RAY_ENCODE_WORKERS`` or the cluster's CPUs / 2). Workers load the encoder by name; ``ship_weights``
    sends this process' current weights instead (a document encoder in training). With ``out`` the workers write
    the vectors into that ``.npy`` file and the result is it, memory-mapped read-only."""
    from ragtune.distributed.ray_shards import init_ray

    ray = init_ray(address)
    from ray.exceptions import GetTimeoutError, RayError

    n = len(texts)
    path = None if out is None else str(out)
    if path is None:
        result = np.empty((n, encoder.dim), dtype=np.float32)
    else:  # the file the workers write into: made (zeroed) here, so every row has a place before any worker runs
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, encoder.dim)).flush()
        result = None
    if n == 0:
        return result if path is None else np.load(path, mmap_mode="r")
    order = length_order(encoder, texts)
    chunk = encoder.batch_size * max(1, batches_per_task)
    starts = list(range(0, n, chunk))
    if workers is None:
        workers = int(os.environ.get("RAGTUNE_RAY_ENCODE_WORKERS", 0)) or max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
    workers = max(1, min(workers, len(starts)))
    timeout = timeout if timeout is not None else float(os.environ.get("RAGTUNE_RAY_TIMEOUT", 600))
    state = None
    if ship_weights:
        state = ray.put({k: v.detach().cpu() for k, v in encoder.model.state_dict().items()})
    pool = _pool(ray, encoder.to_dict(), state, workers, threads_per_worker)
    try:
        pending: dict[Any, int] = {}
        next_chunk = 0
        # two chunks in flight per worker: one running, one queued behind it
        while next_chunk < len(starts) or pending:
            while next_chunk < len(starts) and len(pending) < 2 * workers:
                s = starts[next_chunk]
                rows = order[s:s + chunk]
                worker = pool[next_chunk % workers]
                chunk_texts = [texts[i] for i in rows]
                ref = worker.encode.remote(chunk_texts) if path is None else worker.encode_into.remote(chunk_texts, rows, path)
                pending[ref] = s
                next_chunk += 1
            done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if not done:
                raise RagtuneError(f"dense encoding on Ray: no chunk finished within {timeout:g} s; see `ray status`")
            ref = done[0]
            s = pending.pop(ref)
            try:
                got = ray.get(ref, timeout=timeout)
                if path is None:
                    result[order[s:s + chunk]] = got
            except (GetTimeoutError, RayError) as e:
                reason = " ".join(str(e).split())[:300]
                raise RagtuneError(f"dense encoding on Ray failed at passages {s}..{s + chunk} ({reason})") from None
    finally:
        if state is not None:  # weights of the moment: this pool serves no later call
            for a in pool:
                ray.kill(a)
    return result if path is None else np.load(path, mmap_mode="r")


_POOLS: dict[str, list[Any]] = {}


def _pool(ray: Any, spec: dict, state: Any, workers: int, threads: int | None) -> list[Any]:
    """``workers`` encoder actors; those of a named encoder are kept for the next call (an index update encodes
    in batches of 50,000 passages), and die with this process."""
    import json

    remote = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=1)(EncodeWorker)
    if state is not None:
        shutdown_pools()
        return [remote.remote(spec, state, threads) for _ in range(workers)]
    key = json.dumps([spec, workers, threads], sort_keys=True)
    if key not in _POOLS:
        shutdown_pools()  # one kept pool at a time: an older one would hold the CPUs this one needs
        _POOLS[key] = [remote.remote(spec, None, threads) for _ in range(workers)]
    return _POOLS[key]


def shutdown_pools() -> None:
    """Stop the kept encoder actors (their CPUs go back to the cluster)."""
    import ray

    for pool in _POOLS.values():
        for a in pool:
            ray.kill(a)
    _POOLS.clear()


def add_encoded(retriever: Any, passages: Sequence[Any], address: str, spill_dir: str | os.PathLike | None = None) -> None:
    """``DenseRetriever.add(passages)`` with the encoding done on a Ray pool; with ``spill_dir`` (shared storage,
    e.g. the index's staging directory) the workers write the vectors there and the file is removed once added."""
    if not passages:
        return
    if any(p.id < 0 for p in passages):
        raise ValueError("passages must carry passage-store ids (id >= 0) before they are indexed")
    out = None
    if spill_dir is not None:
        os.makedirs(spill_dir, exist_ok=True)
        out = os.path.join(spill_dir, f"vectors-{passages[0].id}-{len(passages)}.npy")
    try:
        vecs = encode_passages(retriever.encoder, [p.indexed_text for p in passages], address, out=out)
        retriever.add_vectors(np.array([p.id for p in passages], dtype=np.int64), np.asarray(vecs))
        del vecs
    finally:
        if out is not None and os.path.exists(out):
            os.remove(out)
