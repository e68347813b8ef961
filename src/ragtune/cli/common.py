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


def print_skipped(problems: Any, prefix: str = "", limit: int = 5) -> None:
    """The first ``limit`` problems of a read (bad rows, bad files) on stderr, one line each, and how many more."""
    problems = list(problems)
    for p in problems[:limit]:
        err_console.print(f"skipped {prefix}{p}", soft_wrap=True, markup=False, highlight=False)
    if len(problems) > limit:
        err_console.print(f"  ... and {len(problems) - limit} more", soft_wrap=True, highlight=False)


def metrics_table(title: str, rows: Any) -> Any:
    """A two-column rich table of ``(metric, value)`` rows; floats shown with 4 decimals, None as n/a."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, v in rows:
        table.add_row(name, "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
    return table


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
