"""ragtune.distributed: running across processes and machines.

``torch_ddp``: data-parallel training under torchrun. ``shards``: a sharded index searched in-process with an exact
merge. ``ray_shards``: the same shards served by Ray actors (timeouts, restarts). ``encoding``: dense encoding on a
pool of Ray actors. Ray is optional (``pip install 'ragtune[ray]'``) and imported only when asked for.

``use_ray(address)`` (the CLI's ``--ray``) records the address in ``$RAGTUNE_RAY``, so every index this process (and
its child processes, e.g. torchrun ranks) opens is searched through shard actors; ``Index.retriever`` asks
``open_retriever`` for a sharded index or when Ray is on.
"""
from __future__ import annotations

import json
import os
from typing import Any

RAY_ENV = "RAGTUNE_RAY"
AUTH_MODE = "RAY_AUTH_MODE"


def ray_address() -> str | None:
    """The Ray address this process was told to use (``--ray``), or None."""
    return os.environ.get(RAY_ENV) or None


def use_ray(address: str | None) -> None:
    """Search (and encode) through Ray at ``address`` ("local" starts a local Ray): checks that Ray is installed
    and reachable now, so a bad ``--ray`` fails at once with one line. Under torchrun, "local" is one Ray for all
    ranks (rank 0 starts it), so the ranks share one set of shard actors."""
    if not address:
        return
    from ragtune.distributed.ray_shards import init_ray

    if address == "local" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        address = shared_local_ray()
    else:
        init_ray(address)
    os.environ[RAY_ENV] = address


def shared_local_ray(timeout_s: float = 120.0) -> str:
    """Rank 0 starts a local Ray and posts its address in torchrun's rendezvous store; the other ranks connect to
    it. The store is the launcher's own (``TORCHELASTIC_USE_AGENT_STORE``), so the process group is untouched and
    can still be made with whatever backend the training device needs. Returns the address."""
    from datetime import timedelta

    from ragtune.distributed.ray_shards import import_ray, init_ray
    from ragtune.errors import RagtuneError

    import_ray()  # not installed: one line on every rank at once, not a wait for rank 0
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true":
        raise RagtuneError("--ray local across several ranks needs torchrun (its rendezvous store shares the address); "
                           "otherwise start a cluster with `ray start --head` and pass --ray HOST:PORT")
    import torch.distributed as dist

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=timedelta(seconds=timeout_s))
    key = f"ragtune/ray-address/{os.environ.get('TORCHELASTIC_RUN_ID', '')}"
    if int(os.environ.get("RANK", "0")) == 0:
        ray = init_ray("local")
        address = ray.get_runtime_context().gcs_address
        # a new local Ray turns on token authentication (the token is in ~/.ray, shared on this machine); a
        # process that connects to it must be told to present the token
        store.set(key, json.dumps([address, os.environ.get(AUTH_MODE)]))
        return address
    try:
        address, auth = json.loads(store.get(key))  # waits for rank 0
    except Exception as e:  # noqa: BLE001 - a store timeout is a RuntimeError or DistStoreError by version
        raise RagtuneError(f"rank {os.environ.get('RANK')}: rank 0 did not start a local Ray within {timeout_s:g} s "
                           f"({type(e).__name__})") from None
    if auth:
        os.environ[AUTH_MODE] = auth
    init_ray(address)
    return address


def open_retriever(index: Any, kind: str, *, device: str | None = None) -> Any:
    """The retriever ``kind`` of an opened ``Index``: shard actors under Ray, else a ``ShardedRetriever``."""
    from ragtune.distributed.shards import shard_count

    count = shard_count(index.manifest)
    sizes = (index.manifest.get("shards") or {}).get("passages")
    address = ray_address()
    if address:
        from ragtune.distributed.ray_shards import RayShardedRetriever

        return RayShardedRetriever.open(index, kind, address, device=device)
    from ragtune.distributed.shards import ShardedRetriever

    return ShardedRetriever.load(index.path, kind, count, sizes, device=device)
