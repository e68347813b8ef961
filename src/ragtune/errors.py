"""Errors a user can fix. The faces print the message on one line and exit with code 2."""


class RagtuneError(Exception):
    """Bad input or a bad index: the message names the problem and the fix."""


class Interrupted(Exception):
    """A command stopped by Ctrl-C; the message says what was kept. The CLI prints it and exits 130.

    Not a ``KeyboardInterrupt``: typer swallows those into a bare exit code, losing the message."""
