"""`ragtune serve` as a user runs it: it prints its address only once it listens; a bad port is one line, exit 2."""
import re
import socket

import httpx

from tests.helpers.cli import assert_user_error, cli, cli_env
from tests.server.fakes import make_index


def test_bad_port_is_one_line(tmp_path):
    idx = make_index(tmp_path)
    p = cli("serve", "--index", idx, "--port", "99999")
    assert_user_error(p, contains="99999")
    assert "serving" not in p.stdout


def test_port_in_use_is_one_line_and_nothing_claims_to_serve(tmp_path):
    idx = make_index(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        p = cli("serve", "--index", idx, "--port", taken.getsockname()[1])
    assert_user_error(p, contains="cannot listen")
    assert "serving" not in p.stdout


def test_missing_index_is_one_line(tmp_path):
    assert_user_error(cli("serve", "--index", tmp_path / "none", "--port", "0"), contains="no index")


def test_serves_once_it_prints_its_address(tmp_path):
    import subprocess
    import sys

    idx = make_index(tmp_path)
    env = cli_env() | {"RAGTUNE_API_KEY": "k9"}
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--index", str(idx), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://[\d.]+:\d+/", line).group(0)
        assert "API key required" in line
        # the address is printed after the bind: the first request goes through at once
        assert httpx.get(url + "health", timeout=10).json() == {"status": "ok"}
        assert httpx.get(url + "api/health", timeout=10).status_code == 401
        r = httpx.post(url + "api/search", json={"query": "tea"}, headers={"Authorization": "Bearer k9"}, timeout=10)
        assert r.json()["hits"][0]["doc_id"] == "b.txt"
        assert httpx.get(url + "ready", headers={"Authorization": "Bearer k9"}, timeout=10).status_code == 503
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    # one structured access-log line per request on stderr
    assert err.count('"request_id"') == 4 and "Traceback" not in err


def test_dtype_sets_the_generators_weights(tmp_path, monkeypatch):
    """`serve --dtype` overrides the index's [generator] dtype; "auto" is bfloat16 where the CPU computes it natively."""
    import torch

    from ragtune.config import Config
    from ragtune.models import hardware
    from ragtune.retrieval.update import update
    from ragtune.server.holder import ModelHolder
    from tests.helpers.tiny_lm import tiny_causal_lm

    lm = tiny_causal_lm(tmp_path / "lm")
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.txt").write_text("The tower is 330 metres tall.", encoding="utf-8")
    update(tmp_path / "idx", [kb], config=Config().updated(generator={"model": str(lm)}))
    monkeypatch.setattr(hardware, "native_bf16", lambda device: True)
    for dtype, want in ((None, torch.float32), ("bfloat16", torch.bfloat16), ("auto", torch.bfloat16)):
        gen = ModelHolder(tmp_path / "idx", dtype=dtype).rag().generator
        assert {p.dtype for p in gen.model.parameters()} == {want}, dtype


def test_bad_dtype_is_one_line(tmp_path):
    assert_user_error(cli("serve", "--index", make_index(tmp_path), "--port", "0", "--dtype", "int3"), contains="generator.dtype")
