"""`ragtune search` and `ragtune eval retrieval`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ragtune.cli.app import app, eval_app
from ragtune.cli.common import RAY_HELP, console, metrics_table, print_json, progress_bar, start_ray


def _with_trained(idx, kind: Optional[str], trained: Optional[Path], device: Optional[str]) -> str:
    """The retriever kind to use; with ``trained``, the index's retriever of that kind (cached by the index, so
    later searches get it) now holds the trained query encoder. A trained model defaults to the retriever it was
    trained through."""
    if trained is None:
        return kind or idx.default_kind()
    from ragtune.rag.trained import apply_trained_retriever, read_meta

    kind = kind or read_meta(trained).get("rag", {}).get("retriever") or "dense"
    apply_trained_retriever(idx.retriever(kind, device=device), trained, device=device or "cpu")
    return kind


@app.command("search")
def search_cmd(
    query: str = typer.Argument(..., help="The question or keywords."),
    index: Path = typer.Option(..., "--index", "-i"),
    k: int = typer.Option(10, "-k", min=1),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r", help="bm25, tfidf, dense, hybrid or rescore (default: the index's best)."),
    rerank: Optional[str] = typer.Option(None, "--rerank", help="A cross-encoder (path or hub id) that reorders the top candidates."),
    rerank_top_n: int = typer.Option(50, "--rerank-top-n", min=1),
    trained: Optional[Path] = typer.Option(None, "--trained", help="A `ragtune train` output: search with its trained query encoder (and re-encoded passages)."),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print {query, hits: [{id, score, title, text}]}."),
    ray: Optional[str] = typer.Option(None, "--ray", help=RAY_HELP),
) -> None:
    """Search an index and show the top-k passages."""
    from ragtune.config import RerankConfig
    from ragtune.retrieval.index import Index

    start_ray(ray)
    rerank_cfg = RerankConfig(model=rerank, top_n=rerank_top_n, device=device or "cpu") if rerank else None
    with Index.open(index) as idx:
        retriever = _with_trained(idx, retriever, trained, device)
        rows = [h.to_dict() for h in idx.search([query], k, retriever, device=device, rerank=rerank_cfg)[0]]
    if as_json:
        print_json({"query": query, "hits": rows})
        return
    table = Table(title=f"{query}", show_lines=False)
    for col, kw in (("#", {"justify": "right"}), ("score", {"justify": "right"}), ("id", {}), ("title", {}), ("text", {"overflow": "fold"})):
        table.add_column(col, **kw)
    for rank, r in enumerate(rows, 1):
        text = r["text"].replace("\n", " ")
        table.add_row(str(rank), f"{r['score']:.3f}", str(r["doc_id"] or r["id"]), r["title"][:40], text[:200] + ("…" if len(text) > 200 else ""))
    console.print(table if rows else "no passage matched")


@eval_app.command("retrieval")
def eval_retrieval_cmd(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."),
    index: Path = typer.Option(..., "--index", "-i"),
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r"),
    split: str = typer.Option("test", "--split"),
    trained: Optional[Path] = typer.Option(None, "--trained", help="A `ragtune train` output: search with its trained query encoder (and re-encoded passages)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where the per-query JSONL and markdown report go (default: ragtune-eval/<name>)."),
    device: Optional[str] = typer.Option(None, "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    ray: Optional[str] = typer.Option(None, "--ray", help=RAY_HELP),
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 on a BEIR dataset."""
    from ragtune.corpus.beir import load_beir
    from ragtune.evaluation.retrieval import evaluate_retrieval
    from ragtune.retrieval.index import Index

    start_ray(ray)
    _, queries, qrels = load_beir(dataset, split=split)
    with Index.open(index) as idx:
        kind = _with_trained(idx, retriever, trained, device)
        counts = idx.manifest.get("counts", {})
        # unchunked corpora (BEIR always is) need no deeper passage search than the documents asked for
        per_doc = 1 if idx.store.n_documents() == len(idx.store) else 4
        with progress_bar(as_json) as progress:
            result = evaluate_retrieval(idx.retriever(kind, device=device), idx.store.doc_ids, queries, qrels,
                                        passages_per_doc=per_doc, progress=lambda d, t: progress("queries", d, t))
    out = out or Path("ragtune-eval") / f"{dataset.name}-{split}-{kind}"
    jsonl, md = result.write(out, f"{dataset.name} ({split}), retriever {kind}, {counts.get('passages', '?')} passages")
    metrics = {"ndcg@10": result.metrics["ndcg@10"], "recall@10": result.metrics["recall@10"],
               "recall@100": result.metrics["recall@100"], "mrr@10": result.metrics["mrr@10"], "n": len(result.per_query)}
    if as_json:
        print_json(metrics)
        return
    console.print(metrics_table(f"{dataset.name} {split} — {kind}", metrics.items()))
    console.print(f"per-query: {jsonl}\nreport: {md}")
