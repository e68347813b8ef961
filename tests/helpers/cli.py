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
