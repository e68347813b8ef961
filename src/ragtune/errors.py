"""Errors a user can fix. The faces print the message on one line and exit with code 2."""


class RagtuneError(Exception):
    """Bad input or a bad index: the message names the problem and the fix."""
