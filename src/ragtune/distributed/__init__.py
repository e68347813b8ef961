"""ragtune.distributed: running across processes and machines.

``torch_ddp``: data-parallel training under torchrun. ``shards``: a sharded index searched in-process with an exact
merge. ``ray_shards``: the same shards served by Ray actors (timeouts, restarts). ``encoding``: dense encoding on a
pool of Ray actors. Ray is optional (``pip install 'ragtune[ray]'``) and imported only when asked for.

``use_ray(address)`` (the CLI's ``--ray``) records the address in ``$RAGTUNE_RAY``, so every index this process (and
its child processes, e.g. torchrun ranks) opens is searched through shard actors; ``Index.retriever`` asks
``open_retriever`` for a sharded index or when Ray is on.
"""
from __future__ import annotations

import os
from typing import Any

RAY_ENV = "RAGTUNE_RAY"


def ray_address() -> str | None:
    """The Ray address this process was told to use (``--ray``), or None."""
    return os.environ.get(RAY_ENV) or None


def use_ray(address: str | None) -> None:
    """Search (and encode) through Ray at ``address`` ("local" starts a local Ray): checks that Ray is installed
    and reachable now, so a bad ``--ray`` fails at once with one line."""
    if not address:
        return
    from ragtune.distributed.ray_shards import init_ray

    init_ray(address)
    os.environ[RAY_ENV] = address


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
