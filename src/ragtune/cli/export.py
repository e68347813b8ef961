"""`ragtune export`: a model for the fast inference backend."""
from __future__ import annotations

from pathlib import Path

import typer

from ragtune.cli.app import app
from ragtune.cli.common import console


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="A `ragtune train` output, a model directory or a packaged name."),
    out: Path = typer.Option(..., "--out", "-o", help="The directory to write."),
    backend: str = typer.Option("ctranslate2", "--backend", help="ctranslate2 (needs ragtune[fast])."),
) -> None:
    """Convert a model (LoRA adapters merged) so that `ragtune ask --model OUT` runs it on the fast backend."""
    from ragtune.rag.export import export_model

    export_model(model, out, backend=backend)
    console.print(f"[bold]exported[/bold] {model} for {backend} to {out}; run it with `ragtune ask ... --model {out}`",
                  soft_wrap=True, highlight=False)
