"""Dialogue commands: `ragtune eval dialogue` and `ragtune convert kdconv`. Faces over ``ragtune.dialogue`` and
``ragtune.evaluation.dialogue``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ragtune.cli.app import convert_app, eval_app
from ragtune.cli.common import BACKEND_HELP, console, metrics_table, print_json, print_skipped, progress_bar, write_jsonl

QUERY_HELP = ("How a turn's retrieval query is built: history (entities tracked over the conversation), last-turn, "
              "joined (the last user turns) or rewrite (the generator's standalone question); default [chat] query.")


@eval_app.command("dialogue")
def eval_dialogue_cmd(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="KdConv conversations (.json) or `ragtune convert kdconv` rows (.jsonl)."),
    index: Path = typer.Option(..., "--index", "-i", help="The knowledge: an index of triples, documents or both."),
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help="concat, rag-sequence or rag-token."),
    k: Optional[int] = typer.Option(None, "-k", min=1, help="Passages a reply is made from (default 5)."),
    query: Optional[str] = typer.Option(None, "--query", help=QUERY_HELP),
    min_knowledge: Optional[float] = typer.Option(None, "--min-knowledge", help="Reply without knowledge when the best retrieval score is below this."),
    all_turns: bool = typer.Option(False, "--all-turns", help="Also the responses without knowledge (scores the no-knowledge choice)."),
    no_generate: bool = typer.Option(False, "--no-generate", help="Knowledge recall only: retrieve, do not reply."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N responses."),
    model: Optional[str] = typer.Option(None, "--model", help="Generator, or a `ragtune train` output."),
    trained: Optional[Path] = typer.Option(None, "--trained", help="A `ragtune train` output directory."),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
    min_new_tokens: Optional[int] = typer.Option(None, "--min-new-tokens", min=0,
                                                 help="eos cannot end a reply before this many tokens (a stop string still can)."),
    decoding: Optional[str] = typer.Option(None, "--decoding", help="greedy, beam or sample (rag-token: greedy or beam)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Write every turn's reply and retrieval as JSONL here."),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
    device: str = typer.Option("cpu", "--device"),
    backend: Optional[str] = typer.Option(None, "--backend", help=BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help='Print {"knowledge_recall@1", "knowledge_recall@5", "bleu4", "f1", "distinct2", "n", ...}.'),
) -> None:
    """Knowledge Recall@1/5, BLEU-1/4, character F1, Distinct-1/2 and value rate of chat replies."""
    from ragtune.cli.qa import _decoding, open_rag
    from ragtune.dialogue.kdconv import load_dialogue
    from ragtune.evaluation.dialogue import evaluate_dialogue

    problems: list[str] = []
    examples = load_dialogue(dataset, with_knowledge_only=not all_turns, problems=problems)[:limit]
    print_skipped(problems)
    rag = open_rag(index, model=model, trained=trained, mode=mode, k=k, retriever=retriever, config=config, device=device,
                   backend=backend)
    rag.chat = rag.chat.with_values(query=query, min_knowledge=min_knowledge)
    opts = _decoding(decoding, max_new_tokens, min_new_tokens)
    with progress_bar(as_json) as progress:
        report = evaluate_dialogue(rag, examples, batch_size=batch_size, generate=not no_generate,
                                   progress=lambda d, t: progress("replying" if not no_generate else "retrieving", d, t), **opts)
    if predictions is not None:
        write_jsonl(predictions, report.predictions)
    d = report.to_dict()
    if as_json:
        print_json(d)
        return
    title = f"{dataset.name}: {report.n} responses with knowledge, {report.mode}, k={report.k}, query={report.query}"
    console.print(metrics_table(title, [(name, v) for name, v in d.items() if name not in ("n", "mode", "k", "query")]))


@convert_app.command("kdconv")
def convert_kdconv_cmd(
    file: Path = typer.Argument(..., help="KdConv conversations: a JSON list of {messages: [{message, attrs?}]}."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL rows {question, history, answers, knowledge, positive_texts}."),
    all_turns: bool = typer.Option(False, "--all-turns", help="Also the responses that use no knowledge."),
) -> None:
    """Training rows for `ragtune train`: the message, its history, the reply, and as positives the relation chains
    of its annotated triples (what the path retriever's scorer reads)."""
    from ragtune.dialogue.kdconv import load_kdconv, training_row

    problems: list[str] = []
    examples = load_kdconv(file, with_knowledge_only=not all_turns, problems=problems)
    print_skipped(problems)
    write_jsonl(out, [training_row(e) for e in examples])
    console.print(f"wrote {len(examples)} rows to {out}")
