"""Running the CLI in-process, the way a user would from a shell."""
import pytest

from ragtune.cli import main


def run(capsys, *argv) -> str:
    """Run a command that must succeed; its standard output."""
    main([str(a) for a in argv])
    return capsys.readouterr().out


def fail(capsys, *argv) -> str:
    """Run a command that must fail as a user error: exit code 2 and one line on stderr naming the fix."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    return err


# -- the real CLI in a subprocess: exit codes, stderr and signals as a shell sees them ---------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("RAGTUNE_API_KEY", None)
    return env


def cli(*argv, timeout: float = 120, input: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    """``ragtune ARGV...`` in a fresh process; never raises on a non-zero exit."""
    return subprocess.run([sys.executable, "-m", "ragtune", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, input=input, env=cli_env(), cwd=cwd)


def cli_start(*argv, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ragtune", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=cwd)


def assert_user_error(proc, *, code: int = 2, contains: str = "") -> str:
    """A user error as promised: the exit code, one line on stderr, no traceback; returns that line."""
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert err and "\n" not in err, f"stderr is not one line: {proc.stderr!r}"
    assert contains in err, err
    return err
