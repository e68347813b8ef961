"""Index shards served by Ray actors: one actor per shard loads only its shard; searches fan out and merge exactly.

The design of transformers' ``RagRayDistributedRetriever``: the index lives in actors, not in every training rank.
Actors are named from the index and shard (``get_if_exists``), so every process connected to the same cluster
(e.g. each torchrun rank) shares one set. Dense queries are encoded once, in the caller (whose query encoder may be
training), and only vectors travel.

Faults: actors are created with ``max_restarts`` and ``max_task_retries``, so a shard actor that dies is restarted
by Ray (it reloads its shard from disk) and the call retried; the answer is the same. Every remote call has a
timeout (``$RAGTUNE_RAY_TIMEOUT``, default 60 s; loading a shard ``$RAGTUNE_RAY_LOAD_TIMEOUT``, default 600 s), and
a shard that cannot answer is one ``RagtuneError`` naming it.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ragtune.distributed.shards import ShardedRetriever, merge_hits, shard_count, shard_of, shard_path
from ragtune.errors import RagtuneError
from ragtune.retrieval.base import Hits, cap_k

INSTALL_HINT = "pip install 'ragtune[ray]'"
NAMESPACE = "ragtune"
MAX_RESTARTS = 3
CONNECT_TIMEOUT_S = 10.0


def _timeout(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RagtuneError(f"Ray is not installed: {INSTALL_HINT}") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail within CONNECT_TIMEOUT_S when nothing listens at ``host:port`` (``ray.init`` itself may retry for
    minutes)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RagtuneError(f"--ray {address}: expected HOST:PORT, ray://HOST:PORT, auto or local")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise RagtuneError(f"cannot reach Ray at {address} ({type(e).__name__}: {e}); start a cluster with "
                           f"`ray start --head` or use --ray local") from None


def init_ray(address: str) -> Any:
    """Connect to Ray at ``address`` ("local": start one here, no dashboard; "auto": the cluster this machine
    joined); a process already connected keeps its connection."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    import logging

    try:
        if address == "local":
            ray.init(include_dashboard=False, num_cpus=os.cpu_count() or 1, logging_level=logging.WARNING,
                     object_store_memory=int(os.environ.get("RAGTUNE_RAY_OBJECT_STORE", 500_000_000)),
                     log_to_driver=False, namespace=NAMESPACE)
        else:
            if address != "auto":
                _check_reachable(address)
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, namespace=NAMESPACE)
    except RagtuneError:
        raise
    except Exception as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise RagtuneError(f"cannot connect to Ray at {address} ({reason})") from None
    return ray


class ShardServer:
    """The actor body: one shard of one retriever kind, loaded from ``folder`` (only this shard)."""

    def __init__(self, folder: str, kind: str, device: str | None, store: str | None = None):
        from ragtune.retrieval import registry

        self.folder, self.kind, self.store_path = Path(folder), kind, store
        self.retriever = registry.load(kind, self.folder, device=device)
        self._pending = None

    def ready(self) -> int:
        return os.getpid()

    def peak_rss_mb(self) -> float | None:
        """This actor process' peak resident memory (MB), for the scaling measurements."""
        from ragtune.training.memory import peak_rss_mb

        return peak_rss_mb()

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        h = self.retriever.search(queries, k)
        return h.ids, h.scores

    def search_vectors(self, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        h = self.retriever.search_vectors(qvecs, k)
        return h.ids, h.scores

    def passage_vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.retriever.passage_vectors(ids)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        ids = self.retriever.index.ids()
        return ids, self.retriever.index.reconstruct(ids)

    def prepare_reencode(self, encoder_dict: dict, state: dict) -> int:
        """Encode this shard's passages with the given weights into a new index, kept aside until ``commit``."""
        from ragtune.corpus.store import PassageStore
        from ragtune.retrieval.dense import Encoder

        enc = Encoder.from_dict(encoder_dict)
        enc.model.load_state_dict(state)
        enc.model.eval()
        ids = self.retriever.index.ids()
        store = PassageStore(Path(self.store_path), readonly=True)
        try:
            passages = [p for p in store.get([int(i) for i in ids]) if p is not None]
        finally:
            store.close()
        self._pending = self.retriever.encoded_index(passages, enc)
        return len(passages)

    def commit(self) -> None:
        if self._pending is not None:
            self.retriever.index, self._pending = self._pending, None

    def set_vectors(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Replace this shard's vectors (a checkpoint's live index, on resume)."""
        from ragtune.retrieval.dense.vector_index import VectorIndex

        old = self.retriever.index
        fresh = VectorIndex(old.dim, old.kind, ef_search=old.ef_search, ef_construction=old.ef_construction, nprobe=old.nprobe)
        if len(ids):
            fresh.add(ids, vecs)
        self.retriever.index = fresh


def _actor_name(index_path: Path, manifest: dict, kind: str, shard: int) -> str:
    key = json.dumps([str(index_path.resolve()), manifest.get("updated"), manifest.get("created"), kind, shard])
    return f"ragtune-shard-{hashlib.sha1(key.encode()).hexdigest()[:16]}-{kind}-{shard:03d}"


def _query_encoder(folder: Path, device: str | None) -> Any:
    """The query encoder of a dense shard, without loading its vectors."""
    from ragtune.retrieval.dense import Encoder
    from ragtune.retrieval.dense.retriever import DENSE_JSON, ENCODER_DIR

    dev = device or "cpu"
    if (folder / ENCODER_DIR).is_dir():
        return Encoder.load(folder / ENCODER_DIR, device=dev)
    return Encoder.from_dict(json.loads((folder / DENSE_JSON).read_text())["encoder"], device=dev)


def _rank() -> int:
    try:
        import torch.distributed as dist

        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    except ImportError:
        return 0


def _barrier() -> None:
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class RayShardedRetriever(ShardedRetriever):
    """``ShardedRetriever`` whose shards are Ray actors: the same results, with fan-out, timeouts and restarts."""

    def __init__(self, kind: str, actors: Sequence[Any], sizes: Sequence[int], encoder: Any, where: str,
                 timeout: float | None = None):
        super().__init__(kind, actors, sizes, encoder)
        self.where = where
        self.timeout = timeout if timeout is not None else _timeout("RAGTUNE_RAY_TIMEOUT", 60.0)

    @classmethod
    def open(cls, index: Any, kind: str, address: str, *, device: str | None = None,
             timeout: float | None = None) -> "RayShardedRetriever":
        ray = init_ray(address)
        from ragtune.retrieval.index import STORE

        count = shard_count(index.manifest)
        sharded = "shards" in index.manifest
        folders = [shard_path(index.path, s) / kind for s in range(count)] if sharded else [index.path / kind]
        sizes = index.manifest["shards"]["passages"] if sharded else [index.manifest.get("counts", {}).get("passages", 0)]
        for f in folders:
            if not f.is_dir():
                from ragtune.retrieval.index import IndexFormatError, rebuild_hint

                raise IndexFormatError(f"index at {index.path}: {f.relative_to(index.path)}/ is missing; "
                                       f"{rebuild_hint(index.path)}")
        remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS, num_cpus=0)(ShardServer)
        actors = [remote.options(name=_actor_name(index.path, index.manifest, kind, s), namespace=NAMESPACE,
                                 get_if_exists=True).remote(str(f), kind, device, str(index.path / STORE))
                  for s, f in enumerate(folders)]
        encoder = _query_encoder(folders[0], device) if kind == "dense" else None
        self = cls(kind, actors, sizes, encoder, f"the {kind} index at {index.path}", timeout)
        self._gather("ready", range(len(actors)), lambda s: (), timeout=_timeout("RAGTUNE_RAY_LOAD_TIMEOUT", 600.0))
        return self

    # -- calls ----------------------------------------------------------------------------------------------
    def _gather(self, method: str, shards: Sequence[int], args: Callable[[int], tuple],
                timeout: float | None = None) -> dict[int, Any]:
        """Call ``method`` on the given shards' actors at once; wait for all within the timeout. Ray restarts a
        dead actor and retries the call itself (``max_task_retries``); what still fails is one error naming the
        shard."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        timeout = self.timeout if timeout is None else timeout
        refs = {s: getattr(self.parts[s], method).remote(*args(s)) for s in shards}
        deadline = time.monotonic() + timeout
        out = {}
        for s, ref in refs.items():
            try:
                out[s] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except GetTimeoutError:
                for r in refs.values():
                    ray.cancel(r, force=False)
                raise RagtuneError(f"shard {s} of {self.where} did not answer within {timeout:g} s "
                                   f"(Ray actor {method}); see `ray status`, or raise $RAGTUNE_RAY_TIMEOUT") from None
            except RayActorError as e:
                reason = " ".join(str(e).split())[:300]
                raise RagtuneError(f"shard {s} of {self.where} is down and could not be restarted "
                                   f"({reason})") from None
            except RayTaskError as e:
                cause = getattr(e, "cause", None) or e
                if isinstance(cause, RagtuneError):
                    raise RagtuneError(f"shard {s} of {self.where}: {cause}") from None
                reason = " ".join(f"{type(cause).__name__}: {cause}".split())[:300]
                raise RagtuneError(f"shard {s} of {self.where} failed ({reason})") from None
        return out

    def search(self, queries: Sequence[str], k: int, *, return_vectors: bool = False) -> Hits:
        if isinstance(queries, str):
            raise TypeError("search() takes a sequence of queries; wrap a single query in a list")
        if self.is_dense:
            return self.search_vectors(self.encoder.encode_queries(list(queries)), k, return_vectors=return_vectors)
        k = cap_k(k, len(self))
        live = self._live()
        if not live:
            return Hits.empty(len(queries), k)
        import ray

        ref = ray.put(list(queries))
        got = self._gather("search", live, lambda s: (ref, k))
        return merge_hits([Hits(*got[s]) for s in live], k)

    def search_vectors(self, qvecs: np.ndarray, k: int, *, return_vectors: bool = False) -> Hits:
        qvecs = np.asarray(qvecs, dtype=np.float32)
        k = cap_k(k, len(self))
        live = self._live()
        if not live:
            return Hits.empty(len(qvecs), k)
        import ray

        ref = ray.put(qvecs)
        got = self._gather("search_vectors", live, lambda s: (ref, k))
        hits = merge_hits([Hits(*got[s]) for s in live], k)
        if return_vectors:
            hits.vectors = self.passage_vectors(hits.ids)
        return hits

    def passage_vectors(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        which = shard_of(ids, len(self.parts))
        out = np.zeros(ids.shape + (self.encoder.dim,), dtype=np.float32)
        asked = [int(s) for s in np.unique(which[which >= 0])]
        got = self._gather("passage_vectors", asked, lambda s: (ids[which == s],))
        for s in asked:
            out[which == s] = got[s]
        return out

    # -- training: the live index on the actors -------------------------------------------------------------
    def reencode(self, passages: Sequence[Any] = (), encoder: Any = None) -> None:
        """Re-encode every shard with ``encoder``'s current weights on the actors (each reads its own passages
        from the store; ``passages`` is ignored), then swap all shards in: nothing changes unless every shard
        encoded."""
        import ray

        rank0 = _rank() == 0
        if rank0:  # the actors are shared by every rank: one of them re-encodes, the others wait for it
            enc = encoder or self.encoder
            state = ray.put({k: v.detach().cpu() for k, v in enc.model.state_dict().items()})
            spec = enc.to_dict()
            live = self._live()
            self._gather("prepare_reencode", live, lambda s: (spec, state), timeout=_timeout("RAGTUNE_RAY_LOAD_TIMEOUT", 600.0))
            self._gather("commit", live, lambda s: ())
        _barrier()

    @property
    def index(self) -> Any:
        """The whole vector index, gathered from the actors (for saving a checkpoint or a trained model)."""
        from ragtune.distributed.shards import whole_index

        got = self._gather("vectors", self._live(), lambda s: ())
        return whole_index([got[s] for s in got], self.encoder.dim)

    @index.setter
    def index(self, value: Any) -> None:
        """Load a whole vector index into the shard actors, each taking its ids (``id % count``)."""
        ids = value.ids()
        vecs = value.reconstruct(ids)
        which = shard_of(ids, len(self.parts))
        if _rank() == 0:
            self._gather("set_vectors", range(len(self.parts)), lambda s: (ids[which == s], vecs[which == s]))
        _barrier()

    def encoded_index(self, passages: Sequence[Any], encoder: Any = None) -> Any:
        from ragtune.retrieval.dense import DenseRetriever

        return DenseRetriever(encoder=encoder or self.encoder).encoded_index(passages, encoder or self.encoder)

    def actor_pids(self) -> list[int]:
        got = self._gather("ready", range(len(self.parts)), lambda s: ())
        return [got[s] for s in range(len(self.parts))]

    def __repr__(self) -> str:
        return f"RayShardedRetriever({self.kind!r}, shards={len(self.parts)}, passages={len(self)})"
