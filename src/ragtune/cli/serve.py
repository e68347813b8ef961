"""`ragtune serve`: the HTTP API (native and OpenAI-compatible) and the web page over one index."""
from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Optional

import typer

from ragtune.cli.app import app
from ragtune.cli.common import BACKEND_HELP, RAY_HELP, start_ray
from ragtune.errors import RagtuneError


def listen(host: str, port: int) -> socket.socket:
    """A socket bound and listening on ``host:port``; a one-line ``RagtuneError`` when that cannot be."""
    if not 0 <= port <= 65535:
        raise RagtuneError(f"--port {port} is not a TCP port (0-65535)")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        raise RagtuneError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


@app.command("serve")
def serve_cmd(
    index: Path = typer.Option(..., "--index", "-i"),
    host: Optional[str] = typer.Option(None, "--host", help="Default 127.0.0.1 ([server] host)."),
    port: Optional[int] = typer.Option(None, "--port", help="Default 8000 ([server] port); 0 picks a free one."),
    device: Optional[str] = typer.Option(None, "--device"),
    backend: Optional[str] = typer.Option(None, "--backend", help=BACKEND_HELP),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="The generator's weights: auto (bfloat16 where the device "
                                        "computes it natively, about 2x the answers/s on such a CPU), float32, bfloat16, "
                                        "float16. Default: the index's [generator] dtype (float32)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="RAGTUNE_API_KEY",
                                          help="Require Authorization: Bearer KEY on every route but /health and the page."),
    preload: bool = typer.Option(False, "--preload", help="Load the models at start; /ready is 503 until they are loaded."),
    max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size", min=1, help="Answer requests decoded together."),
    max_wait_ms: Optional[float] = typer.Option(None, "--max-wait-ms", min=0, help="How long a batch waits for company."),
    queue_size: Optional[int] = typer.Option(None, "--queue-size", min=1, help="Answer requests queued before 429."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.001, help="Seconds per answer request."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A ragtune.toml whose [server] section wins over the index's."),
    ray: Optional[str] = typer.Option(None, "--ray", help=RAY_HELP),
) -> None:
    """Serve /v1/chat/completions (OpenAI-compatible), /api/search, /api/ask, /metrics and a web page (ragtune\\[server])."""
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise RagtuneError("the server needs uvicorn and fastapi: pip install 'ragtune[server]'")
    if port is not None and not 0 <= port <= 65535:
        raise RagtuneError(f"--port {port} is not a TCP port (0-65535)")
    from ragtune.config import Config
    from ragtune.retrieval.index import Index
    from ragtune.server.app import create_app

    start_ray(ray)

    base = Config.load(config) if config is not None else Index.open(index).config
    cfg = base.server.model_copy(update={k: v for k, v in {
        "host": host, "port": port, "max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms, "queue_size": queue_size,
        "timeout_s": timeout, "preload": preload or None}.items() if v is not None})
    cfg = type(cfg).model_validate(cfg.model_dump())  # the overrides obey the same bounds as the file
    api = create_app(index, device=device, config=cfg, api_key=api_key or None, backend=backend, dtype=dtype)
    sock = listen(cfg.host, cfg.port)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("ragtune.server", "ragtune.server.access"):
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("ragtune.server").addHandler(handler)
    bound = sock.getsockname()[1]
    # plain print, not rich: a wrapped URL would break scripts that read it
    print(f"serving {index} on http://{cfg.host}:{bound}/" + ("  (API key required)" if api_key else ""), flush=True)
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning", access_log=False, timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
