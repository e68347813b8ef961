"""`ragtune train` end to end on a tiny fixture: index, JSONL rows with a bad line, --dev-fraction, --resume."""
from __future__ import annotations

import json

import pytest

from ragtune.cli import main
from ragtune.training.data import write_examples
from tests.helpers.cli import fail, run
from tests.training.conftest import small_world, world_toml as _toml  # noqa: F401  (the session fixture)


def test_train_cli_end_to_end(small_world, tmp_path, capsys):  # noqa: F811
    from ragtune.rag.model import RAG

    w = small_world
    rows = tmp_path / "train.jsonl"
    write_examples(w["train"], rows)
    with open(rows, "a") as f:
        f.write('{"question": "no answers"}\n')
    cfg = _toml(tmp_path / "ragtune.toml", w)
    out = tmp_path / "out"
    argv = ["train", "--index", str(w["root"] / "index"), "--train", str(rows), "--out", str(out), "--dev-fraction", "0.2",
            "--config", str(cfg), "--max-steps", "2", "--quiet"]
    main(argv)
    assert (out / "ragtune.json").exists() and (out / "checkpoint").is_dir()
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]
    assert any("eval" in m for m in metrics)
    rag = RAG.from_pretrained(out)
    assert rag.mode == "rag-sequence" and rag.k == 3
    # resume continues from step 2 to a new --max-steps
    main(argv[:-3] + ["--max-steps", "3", "--resume", "--quiet"])
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]


def test_train_cli_strict_and_bad_freeze(small_world, tmp_path, capsys):  # noqa: F811
    w = small_world
    rows = tmp_path / "train.jsonl"
    rows.write_text('{"question": "q", "answers": ["a"]}\n{"question": "q2"}\n')
    base = ["train", "--index", str(w["root"] / "index"), "--train", str(rows), "--out", str(tmp_path / "o"),
            "--config", str(_toml(tmp_path / "r.toml", w)), "--max-steps", "1", "--quiet"]
    with pytest.raises(SystemExit) as e:
        main(base + ["--strict"])
    assert e.value.code == 2 and "line 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(base + ["--freeze", "everything"])
    assert e.value.code == 2 and "cannot freeze" in capsys.readouterr().err


def test_train_cli_contrastive_retriever_only(small_world, tmp_path, capsys):  # noqa: F811
    """Retriever-only training from rows that have positives but no answers (what a BEIR qrels file gives)."""
    from ragtune.rag.model import RAG

    w = small_world
    rows = tmp_path / "train.jsonl"
    write_examples([{"question": e.question, "positive_texts": e.positive_texts} for e in w["train"]], rows)
    out = tmp_path / "out"
    base = ["train", "--index", str(w["root"] / "index"), "--train", str(rows), "--out", str(out),
            "--config", str(_toml(tmp_path / "r.toml", w)), "--max-steps", "2", "--quiet"]
    err = fail(capsys, *base, "--objective", "contrastive")
    assert "BM25" in err and "hard_negatives = 0" in err  # this index has no bm25 retriever
    main(base + ["--objective", "contrastive", "--hard-negatives", "0", "--dev-fraction", "0.2"])
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [m["eval"] for m in metrics if "eval" in m]
    assert evals and set(evals[-1]) == {"recall@1", "recall@5"}
    assert json.loads((out / "ragtune.json").read_text())["training"]["objective"] == "contrastive"
    trained = RAG.from_pretrained(out)
    assert isinstance(trained.ask("where does x live ?").answer, str)
    capsys.readouterr()  # model-loading output
    # `search --trained` ranks with the trained query encoder, as the loaded model does
    q = w["dev"][0].question
    hits = json.loads(run(capsys, "search", q, "--index", w["root"] / "index", "--trained", out, "-k", 3, "--json"))["hits"]
    want = trained.retrieve([q], 3)
    assert [h["id"] for h in hits] == [int(i) for i in want.ids[0]]
    assert [h["score"] for h in hits] == pytest.approx([float(x) for x in want.scores[0]], abs=1e-5)
    plain = json.loads(run(capsys, "search", q, "--index", w["root"] / "index", "-r", "dense", "-k", 3, "--json"))["hits"]
    assert [h["score"] for h in plain] != pytest.approx([h["score"] for h in hits], abs=1e-5)  # training moved them
    err = fail(capsys, *base, "--objective", "dpr")
    assert "training.objective" in err
