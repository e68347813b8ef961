"""The CLI faces of sharding and Ray: `index --shards`, `search`/`eval retrieval --ray`, one-line failures."""
from __future__ import annotations

import json

import pytest

from tests.helpers.cli import cli, fail, run


def test_eval_retrieval_ray_local_shards_2_equals_single(tmp_path, beir_dir, ray_local, monkeypatch, capsys):
    monkeypatch.setenv("RAGTUNE_RAY", "")  # --ray sets it for the process; restored after the test
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run(capsys, "index", "--beir", beir_dir, "--index", single, "-q")
    run(capsys, "index", "--beir", beir_dir, "--index", sharded, "--shards", "2", "-q")
    want = json.loads(run(capsys, "eval", "retrieval", "-d", beir_dir, "-i", single, "--json", "--out", tmp_path / "e1"))
    # in-process, shard by shard
    mid = json.loads(run(capsys, "eval", "retrieval", "-d", beir_dir, "-i", sharded, "--json", "--out", tmp_path / "e2"))
    got = json.loads(run(capsys, "eval", "retrieval", "-d", beir_dir, "-i", sharded, "--json", "--ray", "local",
                         "--out", tmp_path / "e3"))
    assert want["n"] == 24 and want["ndcg@10"] > 0.3
    for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10"):
        assert round(got[m], 4) == round(want[m], 4) == round(mid[m], 4)
    hits = json.loads(run(capsys, "search", "river stone apple", "-i", sharded, "-k", "5", "--json", "--ray", "local"))
    want_hits = json.loads(run(capsys, "search", "river stone apple", "-i", single, "-k", "5", "--json"))
    assert [h["id"] for h in hits["hits"]] == [h["id"] for h in want_hits["hits"]] and len(hits["hits"]) == 5


def test_unreachable_ray_address_is_one_line_fast(tmp_path, beir_dir, capsys):
    idx = tmp_path / "i"
    run(capsys, "index", "--beir", beir_dir, "--index", idx, "-q")
    r = cli("search", "apple", "-i", idx, "--ray", "127.0.0.1:9", timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Ray at 127.0.0.1:9" in lines[0]


def test_bad_shards_is_a_usage_error(tmp_path, beir_dir, capsys):
    with pytest.raises(SystemExit) as e:
        from ragtune.cli import main

        main(["index", "--beir", str(beir_dir), "--index", str(tmp_path / "x"), "--shards", "0"])
    assert e.value.code == 2
