"""`torchrun ... --ray local`: the ranks share one local Ray (rank 0 starts it) and so one set of shard actors,
instead of each rank starting its own Ray and loading the index again."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("ray")

SCRIPT = """
import json, os, sys
from ragtune.distributed import ray_address, use_ray
from ragtune.distributed.torch_ddp import barrier, init_distributed
from ragtune.retrieval.index import Index

use_ray("local")
info = init_distributed()
with Index.open(sys.argv[1]) as idx:
    r = idx.retriever("bm25")
    hits = r.search(["apple river stone"], 3)
    print("RESULT " + json.dumps({"rank": info.rank, "address": ray_address(), "pids": r.actor_pids(),
                                  "ids": hits.ids.tolist()}), flush=True)
barrier(info)  # rank 0's exit stops the Ray it started: the others finish first
"""


def test_torchrun_ranks_share_one_local_ray_and_its_shard_actors(indexes, tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path), RAGTUNE_RAY="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(indexes[2])]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = sorted((json.loads(line.split("RESULT ", 1)[1]) for line in done.stdout.splitlines() if "RESULT " in line),
                  key=lambda r: r["rank"])
    assert [r["rank"] for r in rows] == [0, 1]
    assert rows[0]["address"] == rows[1]["address"] and rows[0]["address"] != "local"
    assert len(rows[0]["pids"]) == 2 and rows[0]["pids"] == rows[1]["pids"]  # the same two actors
    assert rows[0]["ids"] == rows[1]["ids"]


def test_local_ray_across_ranks_without_torchrun_is_one_line(monkeypatch):
    from ragtune.distributed import use_ray
    from ragtune.errors import RagtuneError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    with pytest.raises(RagtuneError, match="needs torchrun"):
        use_ray("local")
