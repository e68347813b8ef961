"""Knowledge-graph commands: `ragtune index --triples` (its printing), `ragtune eval kgqa` and
`ragtune convert pathquestion`. Faces over ``ragtune.kg``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ragtune.cli.app import convert_app, eval_app
from ragtune.cli.common import BACKEND_HELP, console, metrics_table, print_json, print_skipped, progress_bar, write_jsonl


def index_triples(index: Path, triples: List[Path], sep: Optional[str], *, rebuild: bool = False, quiet: bool = False,
                  config=None, search: Optional[dict] = None) -> None:
    """What `ragtune index --triples` runs: the graph update, then a summary and every malformed line."""
    from ragtune.kg.ingest import update_triples

    report = update_triples(index, triples, sep=sep, rebuild=rebuild, config=config, search=search)
    print_skipped(report.problems, limit=20)
    if quiet:
        return
    console.print(
        f"[bold]indexed[/bold] {index}: {report.files_read} triples file(s) read, {report.files_unchanged} unchanged, "
        f"{report.sources_removed} removed; +{report.triples_added} / -{report.triples_removed} triples, "
        f"{report.triples_total} in all ({report.entities} entities, {report.relations} relations); "
        f"{len(report.problems)} malformed line(s) skipped; {report.seconds:.1f} s",
        soft_wrap=True, highlight=False,
    )


@eval_app.command("kgqa")
def eval_kgqa_cmd(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="JSONL rows {question, answers} or a PathQuestion file."),
    index: Path = typer.Option(..., "--index", "-i", help="An index built with `ragtune index --triples`."),
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help="path (the best path's tail, no generator), concat, rag-sequence or rag-token."),
    k: Optional[int] = typer.Option(None, "-k", min=1, help="Paths to retrieve (default 5)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N questions."),
    model: Optional[str] = typer.Option(None, "--model", help="Generator, or a `ragtune train` output."),
    trained: Optional[Path] = typer.Option(None, "--trained", help="A `ragtune train` output directory."),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r", help="paths, or kg (paths and documents; the default)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Write every prediction as JSONL here."),
    device: str = typer.Option("cpu", "--device"),
    backend: Optional[str] = typer.Option(None, "--backend", help=BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help='Print {"hits@1", "em", "f1", "path_recall@k", "n", ...}.'),
) -> None:
    """Hits@1, EM/F1 and path recall@k of knowledge-graph question answering, and seconds per question."""
    from ragtune.cli.qa import open_rag
    from ragtune.kg.qa import evaluate_kgqa, load_kgqa

    problems: list[str] = []
    rows = load_kgqa(dataset, problems)[:limit]
    print_skipped(problems, f"{dataset} ")
    rag = open_rag(index, model=model, trained=trained, mode=mode or "path", k=k, retriever=retriever, device=device,
                   backend=backend)
    opts = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    with progress_bar(as_json) as progress:
        report = evaluate_kgqa(rag, rows, batch_size=batch_size, progress=lambda d, t: progress("answering", d, t), **opts)
    if predictions is not None:
        write_jsonl(predictions, report.predictions)
    if as_json:
        print_json(report.to_dict())
        return
    d = report.to_dict()
    names = ("hits@1", "em", "f1", f"path_recall@{report.k}", "seconds_per_question")
    console.print(metrics_table(f"{dataset.name}: {report.n} questions, {report.mode}, k={report.k}", [(n, d[n]) for n in names]))


@convert_app.command("pathquestion")
def convert_pathquestion_cmd(
    file: Path = typer.Argument(..., help="A PathQuestion file: question<TAB>answer(a/b)<TAB>s#r1#e1#...#answer."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL rows; with --split, OUT's stem + .train/.dev/.test.jsonl."),
    split: Optional[str] = typer.Option(None, "--split", help="TRAIN:DEV:TEST weights, e.g. 8:1:1 (seeded)."),
    seed: int = typer.Option(0, "--seed"),
    hard: bool = typer.Option(False, "--hard", help="Split by (topic entity, relation sequence): no test pair in training."),
) -> None:
    """Rows {question, answers, positive_texts: [gold relation chain]} for `ragtune train` and `eval kgqa`."""
    from ragtune.kg.qa import hard_split, load_kgqa, parse_ratios, random_split
    from ragtune.training.data import write_examples

    problems: list[str] = []
    rows = load_kgqa(file, problems)
    print_skipped(problems, f"{file} ")
    if split is None:
        n = write_examples([r.record for r in rows], out)
        console.print(f"wrote {n} rows to {out}")
        return
    parts = (hard_split if hard else random_split)(rows, parse_ratios(split), seed=seed)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    for name, part in zip(("train", "dev", "test"), parts):
        path = out.with_name(f"{stem}.{name}.jsonl")
        write_examples([r.record for r in part], path)
        console.print(f"wrote {len(part)} {name} rows to {path}")
