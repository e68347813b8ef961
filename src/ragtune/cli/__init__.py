"""The command line face. It parses, calls the API and prints; it holds no logic of its own.

``main`` is the one place that turns failures into what a user sees: a usage or input error is one line on
stderr and exit 2, an interruption says what was kept and exits 130; only a bug shows a traceback.
"""
from __future__ import annotations

import sys

from ragtune.cli.app import app
from ragtune.errors import Interrupted, RagtuneError

INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _register() -> None:
    # Each module adds its commands to ``app`` on import; a missing optional one must not break the rest.
    import importlib

    for name in ("index", "search", "qa", "train", "serve", "kg", "dialogue", "export"):
        try:
            importlib.import_module(f"ragtune.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"ragtune.cli.{name}":
                raise


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage-style errors, aborts) of click and of the copy of click that newer typers bundle: the two are
    unrelated classes, so both must be caught."""
    import click

    usage, abort = [click.exceptions.ClickException], [click.exceptions.Abort]
    try:
        from typer import exceptions as typer_exceptions
        from typer._click import exceptions as bundled
    except ImportError:  # a typer that uses click itself
        pass
    else:
        usage.append(bundled.ClickException)
        abort.append(typer_exceptions.Abort)
    return tuple(usage), tuple(abort)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_line(e: Exception) -> str:
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path if ctx is not None else 'ragtune'} --help')"
    return f"error: {_one_line(e.format_message())}{hint}"


def _fail(message: str, code: int) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    usage_errors, aborts = _click_errors()
    try:
        _register()
        rv = app(args=argv, standalone_mode=False)
    except Interrupted as e:
        _fail(f"interrupted: {_one_line(str(e))}", INTERRUPTED)
    except KeyboardInterrupt:
        _fail("interrupted", INTERRUPTED)
    except RagtuneError as e:
        _fail(f"error: {_one_line(str(e))}", 2)
    except usage_errors as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare `ragtune` or group: the help is the message
            e.show()
            sys.exit(2)
        _fail(_usage_line(e), 2)
    except aborts:
        _fail("interrupted", INTERRUPTED)
    except ValueError as e:  # pydantic's ValidationError: a bad option or config value
        from pydantic import ValidationError

        if not isinstance(e, ValidationError):
            raise
        bad = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3])
        _fail(f"error: invalid setting: {bad}", 2)
    except BrokenPipeError:  # `ragtune search ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        sys.exit(1)
    # typer turns a KeyboardInterrupt inside a command into the return value 130, after the command's own
    # handlers ran; without this the shell would see success.
    if rv == INTERRUPTED:
        _fail("interrupted", INTERRUPTED)
    if isinstance(rv, int) and rv:
        sys.exit(rv)
