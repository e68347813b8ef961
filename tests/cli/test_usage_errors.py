"""Every usage error is click's one-line message and exit 2, in every command (typer bundles its own click,
whose exceptions are not click's: both must be caught)."""
import pytest

from tests.helpers.cli import assert_user_error, cli


@pytest.mark.parametrize("argv, says", [
    (["frobnicate"], "No such command 'frobnicate'"),
    (["search"], "Missing argument 'query'"),
    (["search", "x"], "Missing option '--index'"),
    (["search", "x", "--index", "idx", "-k", "0"], "'-k'"),
    (["search", "x", "--index", "idx", "-k", "abc"], "'-k'"),
    (["ask", "q", "--index", "idx", "--nope"], "No such option: --nope"),
    (["eval", "qa", "--index", "idx"], "Missing option '--dataset'"),
    (["eval", "retrieval", "--dataset"], "'--dataset' requires an argument"),
    (["train", "--index", "idx", "--train", "t.jsonl", "--out", "o", "--max-steps", "x"], "'--max-steps'"),
    (["convert", "squad"], "Missing argument"),
    (["serve", "--index", "idx", "--port", "eighty"], "'--port'"),
])
def test_usage_error_is_one_line_exit_2(argv, says):
    err = assert_user_error(cli(*argv), contains=says)
    assert err.startswith("error:") and "--help" in err


def test_bare_group_shows_its_help():
    proc = cli("eval")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "retrieval" in proc.stderr + proc.stdout


@pytest.mark.parametrize("argv, says", [
    (["search", "x", "--index", "missing-idx"], "no index at missing-idx"),
    (["index", "no-such-folder", "--index", "idx"], "no-such-folder does not exist"),
    (["eval", "qa", "--dataset", "no.json", "--index", "idx"], "not found"),
])
def test_bad_paths_in_options_are_one_line(tmp_path, argv, says):
    assert_user_error(cli(*argv, cwd=tmp_path), contains=says)
