"""Small pieces the command modules share: consoles, JSON output, progress bars."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

BACKEND_HELP = "Generator backend: torch, or ctranslate2 (fast inference: int8 on CPU; needs ragtune[fast])."
console = Console()
err_console = Console(stderr=True)


def write_jsonl(path: Any, rows: Any) -> None:
    """``rows`` as JSON lines at ``path``, atomically (a --predictions file is never half written)."""
    from ragtune.atomic import atomic_file

    with atomic_file(path) as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def print_json(data: Any) -> None:
    # plain print, not rich: --json output is for machines and must not be wrapped or coloured
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator:
    """A progress callback ``(stage, done, total)`` drawn on stderr; a no-op when quiet or not a terminal."""
    if quiet:
        yield lambda stage, done, total: None
        return
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, transient=True)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


RAY_HELP = "A Ray cluster address, or `local` to start one here: search the index's shards on Ray actors."


def start_ray(address: str | None) -> None:
    """``--ray``: connect (or start a local Ray) now, so a missing Ray or an unreachable address is one line."""
    if address:
        from ragtune.distributed import use_ray

        use_ray(address)
