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
import signal  # noqa: E402
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


def _default_sigint() -> None:
    # a suite started in the background (`pytest &` in a script) has SIGINT ignored, which children inherit and
    # Python then keeps: the Ctrl-C tests would send a signal nobody hears
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_start(*argv, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ragtune", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=cwd, preexec_fn=_default_sigint)


def assert_user_error(proc, *, code: int = 2, contains: str = "") -> str:
    """A user error as promised: the exit code, one line on stderr, no traceback; returns that line."""
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert err and "\n" not in err, f"stderr is not one line: {proc.stderr!r}"
    assert contains in err, err
    return err


def trained_dir(capsys, tmp_path, model_dir, *, mode: str, max_new_tokens: int):
    """An index of one sentence about the Eiffel Tower and a trained-model directory over it (``save_pretrained``
    of an untrained RAG): what `--model DIR` / `--trained DIR` and `export` take. Returns (index, trained)."""
    from ragtune.rag.model import RAG

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.txt").write_text("The Eiffel Tower in Paris was completed in 1889.", encoding="utf-8")
    run(capsys, "index", str(kb), "--index", str(tmp_path / "idx"))
    rag = RAG.from_index(tmp_path / "idx", model=str(model_dir), k=1, mode=mode)
    rag.generator.defaults.max_new_tokens = max_new_tokens
    rag.save_pretrained(tmp_path / "trained")
    return tmp_path / "idx", tmp_path / "trained"
