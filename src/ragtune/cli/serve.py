"""`ragtune serve`: the HTTP API and web page over one index."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ragtune.cli.app import app
from ragtune.cli.common import console


@app.command("serve")
def serve_cmd(
    index: Path = typer.Option(..., "--index", "-i"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Serve /api/search, /api/ask and a small web page (needs ragtune\\[server])."""
    try:
        import uvicorn
    except ModuleNotFoundError:
        from ragtune.errors import RagtuneError

        raise RagtuneError("the server needs uvicorn and fastapi: pip install 'ragtune[server]'")
    from ragtune.server.app import create_app

    api = create_app(index, device=device)
    console.print(f"serving {index} on http://{host}:{port}/")
    uvicorn.run(api, host=host, port=port, log_level="warning")
