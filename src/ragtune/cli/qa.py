"""`ragtune ask`, `ragtune chat` and `ragtune eval qa`: faces over ``ragtune.rag.RAG``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ragtune.cli.app import app, eval_app
from ragtune.cli.common import (BACKEND_HELP, RAY_HELP, console, err_console, metrics_table, print_json, progress_bar, start_ray,
                                 write_jsonl)

MODE_HELP = "concat (all passages in one prompt), rag-sequence, rag-token or path (knowledge-graph indexes)."


def open_rag(index: Path, *, model: Optional[str] = None, trained: Optional[Path] = None, mode: Optional[str] = None,
             k: Optional[int] = None, retriever: Optional[str] = None, config: Optional[Path] = None,
             device: str = "cpu", backend: Optional[str] = None) -> Any:
    """The RAG a command runs (``--trained DIR`` and ``--model DIR`` of a training output are the same); tests
    replace this to inject one."""
    from ragtune.config import Config
    from ragtune.rag.model import RAG

    return RAG.open(index, model=trained or model, mode=mode, k=k, retriever=retriever,
                    config=Config.load(config) if config is not None else None, device=device, backend=backend)


def _decoding(decoding: Optional[str], max_new_tokens: Optional[int], min_new_tokens: Optional[int] = None) -> dict[str, Any]:
    return {k: v for k, v in (("decoding", decoding), ("max_new_tokens", max_new_tokens), ("min_new_tokens", min_new_tokens))
            if v is not None}


def citations_table(out: Any) -> Table:
    table = Table(show_lines=False, title="sources")
    for col, kw in (("#", {"justify": "right"}), ("prior", {"justify": "right"}), ("posterior", {"justify": "right"}),
                    ("title", {}), ("text", {"overflow": "fold"})):
        table.add_column(col, **kw)
    for i, c in enumerate(out.citations, 1):
        text = c.text.replace("\n", " ")
        table.add_row(f"[{i}]", f"{c.prior:.3f}", f"{c.posterior:.3f}", (c.title or c.doc_id)[:40], text[:160] + ("…" if len(text) > 160 else ""))
    return table


def _stream(rag: Any, question: str, history: list[tuple[str, str]], opts: dict[str, Any], show: bool = True,
            dialogue: bool = False) -> Any:
    """The one answer path of ask and chat: ``RAG.stream`` (the same decoding as ``RAG.ask``, or ``RAG.chat_turn``
    with ``dialogue``), its text shown as it arrives unless ``show`` is off; returns the ``RagOutput``."""
    stream = rag.stream(question, history, dialogue=dialogue, **opts)
    for chunk in stream:
        if show:
            sys.stdout.write(chunk)
            sys.stdout.flush()
    if show:
        sys.stdout.write("\n")
    return stream.output


@app.command("ask")
def ask_cmd(
    question: str = typer.Argument(..., help="The question."),
    index: Path = typer.Option(..., "--index", "-i", help="An index directory built by `ragtune index`."),
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help=MODE_HELP),
    k: Optional[int] = typer.Option(None, "-k", min=1, help="Passages to retrieve (default 5)."),
    model: Optional[str] = typer.Option(None, "--model", help="Generator: packaged name, local path or hub id."),
    trained: Optional[Path] = typer.Option(None, "--trained", help="A `ragtune train` output directory (generator + query encoder)."),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r", help="bm25, dense, hybrid or rescore (default: [rag] retriever of the config, bm25)."),
    decoding: Optional[str] = typer.Option(None, "--decoding", help="greedy, beam or sample."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A ragtune.toml overriding the index's config."),
    device: str = typer.Option("cpu", "--device"),
    backend: Optional[str] = typer.Option(None, "--backend", help=BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as the server returns it: {question, answer, logprob, mode, citations: [{id, doc_id, title, text, prior, posterior}]}."),
    ray: Optional[str] = typer.Option(None, "--ray", help=RAY_HELP),
) -> None:
    """Answer a question from an index, streaming the answer, then list the cited passages."""
    start_ray(ray)
    rag = open_rag(index, model=model, trained=trained, mode=mode, k=k, retriever=retriever,
                   config=config, device=device, backend=backend)
    opts = _decoding(decoding, max_new_tokens)
    out = _stream(rag, question, [], opts, show=not as_json)
    if as_json:
        print_json(out.to_dict())
        return
    if out is not None and out.citations:
        console.print(citations_table(out))


@app.command("chat")
def chat_cmd(
    index: Path = typer.Option(..., "--index", "-i"),
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help=MODE_HELP),
    k: Optional[int] = typer.Option(None, "-k", min=1),
    model: Optional[str] = typer.Option(None, "--model"),
    trained: Optional[Path] = typer.Option(None, "--trained"),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    sources: bool = typer.Option(False, "--sources", help="List the cited passages after each answer."),
    query: Optional[str] = typer.Option(None, "--query", help="How a turn's retrieval query is built: history (entities "
                                        "tracked over the conversation; the default), last-turn, joined or rewrite."),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
    device: str = typer.Option("cpu", "--device"),
    backend: Optional[str] = typer.Option(None, "--backend", help=BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON line a turn: the answer as `ask --json` prints it, plus "
                                 "retrieval: {query, rewrite, entities}."),
) -> None:
    """A multi-turn conversation over an index: one message a line on stdin; "exit" or end of input ends it."""
    rag = open_rag(index, model=model, trained=trained, mode=mode, k=k, retriever=retriever,
                   config=config, device=device, backend=backend)
    rag.chat = rag.chat.with_values(query=query)
    opts = _decoding(None, max_new_tokens)
    history: list[tuple[str, str]] = []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            err_console.print("[bold]you>[/bold] ", end="")
        line = sys.stdin.readline()
        if not line:
            break
        message = line.strip()
        if not message:
            continue
        if message.lower() in ("exit", "quit"):
            break
        out = _stream(rag, message, history, opts, show=not as_json, dialogue=True)
        if out is None:
            continue
        if as_json:
            print_json(out.to_dict())
        history.append((message, out.answer))
        if sources and out.citations:
            console.print(citations_table(out))


@eval_app.command("qa")
def eval_qa_cmd(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="SQuAD-style JSON, or JSONL rows {question, answers}."),
    index: Path = typer.Option(..., "--index", "-i"),
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help=MODE_HELP),
    k: Optional[int] = typer.Option(None, "-k", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N questions."),
    model: Optional[str] = typer.Option(None, "--model"),
    trained: Optional[Path] = typer.Option(None, "--trained"),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    batch_size: int = typer.Option(1, "--batch-size", min=1),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Write every prediction as JSONL here."),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
    device: str = typer.Option("cpu", "--device"),
    backend: Optional[str] = typer.Option(None, "--backend", help=BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object (em, f1, n, ...)."),
) -> None:
    """Exact match and F1 (SQuAD-normalised), gold-passage hit rate and seconds per question."""
    from ragtune.evaluation.qa import evaluate_qa, load_qa_dataset

    examples = load_qa_dataset(dataset)[:limit]
    rag = open_rag(index, model=model, trained=trained, mode=mode, k=k, retriever=retriever,
                   config=config, device=device, backend=backend)
    with progress_bar(as_json) as progress:
        report = evaluate_qa(rag, examples, batch_size=batch_size, progress=lambda d, t: progress("answering", d, t),
                             **_decoding(None, max_new_tokens))
    if predictions is not None:
        write_jsonl(predictions, report.predictions)
    if as_json:
        print_json(report.to_dict())
        return
    rows = [("EM", report.em), ("F1", report.f1), ("gold passage hit rate", report.hit_rate),
            ("answer in retrieved passages", report.answer_recall), ("seconds / question", report.seconds_per_question),
            ("  retrieval", report.retrieval_seconds_per_question), ("  generation", report.generation_seconds_per_question)]
    console.print(metrics_table(f"{dataset.name}: {report.n} questions, {report.mode}, k={report.k}", rows))
