"""The command line face. It parses, calls the API and prints; it holds no logic of its own."""
from __future__ import annotations

import sys

from ragtune.cli.app import app
from ragtune.errors import RagtuneError


def _register() -> None:
    # Each module adds its commands to ``app`` on import; a missing optional one must not break the rest.
    import importlib

    for name in ("index", "search", "qa", "train", "serve"):
        try:
            importlib.import_module(f"ragtune.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"ragtune.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except RagtuneError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:  # pydantic's ValidationError: a bad option or config value
        from pydantic import ValidationError

        if not isinstance(e, ValidationError):
            raise
        bad = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3])
        print(f"error: invalid setting: {bad}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click's own usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(2)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
