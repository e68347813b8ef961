"""`ragtune index`: build or incrementally update an index directory."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ragtune.cli.app import app
from ragtune.cli.common import console, err_console, progress_bar, start_ray
from ragtune.config import Config
from ragtune.errors import Interrupted


@app.command("index")
def index_cmd(
    paths: List[Path] = typer.Argument(None, help="Files or folders to index (.txt .md .html .jsonl .csv .pdf)."),
    index: Path = typer.Option(..., "--index", "-i", help="The index directory to create or update."),
    retriever: List[str] = typer.Option(["bm25"], "--retriever", "-r", help="bm25, tfidf, dense, hybrid or rescore (hybrid and rescore add the [hybrid] retrievers); repeatable."),
    beir: List[Path] = typer.Option([], "--beir", help="A BEIR folder (corpus.jsonl) to index, whole documents."),
    triples: List[Path] = typer.Option([], "--triples", help="Knowledge-graph triples: .tsv/.txt (s<TAB>r<TAB>o), .nt, .ttl, .jsonl; repeatable."),
    triples_sep: Optional[str] = typer.Option(None, "--triples-sep", help="Field separator of .tsv/.txt triples (default a tab), e.g. '|'."),
    path_search: List[str] = typer.Option([], "--path-search", help="A path search setting kept with the graph, NAME=VALUE: "
                                          "max_hops, beam, max_frontier, max_edges, max_candidates, max_topics, min_link, "
                                          "w_sparse, w_link (docs/kg.md); repeatable."),
    chunk_words: Optional[int] = typer.Option(None, "--chunk-words", help="Passage window in words (0: whole documents)."),
    chunk_overlap: Optional[int] = typer.Option(None, "--chunk-overlap", help="Overlap between windows in words."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Dense encoder: a packaged name (minilm), a path or a hub id."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps ..."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Start from scratch instead of updating."),
    optimize: bool = typer.Option(False, "--optimize", help="Merge segments and drop deleted passages."),
    wait: Optional[bool] = typer.Option(None, "--wait/--no-wait", help="If another process is updating this index: wait for it (default) or fail at once."),
    shards: Optional[int] = typer.Option(None, "--shards", min=1, help="Split the passages into N shards (ragtune.distributed); default: keep the index's count (1)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="A Ray address or `local`: encode dense passages on Ray actors."),
    config: Optional[Path] = typer.Option(None, "--config", help="A ragtune.toml file."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Index documents for retrieval; re-running on a changed folder adds, replaces and removes files."""
    from ragtune.retrieval.update import update

    start_ray(ray)
    cfg = Config.load(config).updated(
        corpus={"chunk_words": chunk_words, "chunk_overlap": chunk_overlap},
        dense={"encoder": encoder, "device": device},
        index={"wait": wait},
    )
    from ragtune.kg.paths import parse_settings

    search = parse_settings(path_search) or None
    if search and not triples:
        from ragtune.errors import RagtuneError

        raise RagtuneError("--path-search sets how triples are searched: give the triples with --triples")
    if triples and not paths and not beir:  # a knowledge graph alone (ragtune.kg)
        from ragtune.cli.kg import index_triples

        return index_triples(index, triples, triples_sep, rebuild=rebuild, quiet=quiet, config=cfg, search=search)
    try:
        with progress_bar(quiet) as progress:
            report = update(index, paths or [], beir=beir, retrievers=retriever, config=cfg, rebuild=rebuild,
                            optimize=optimize, progress=progress, on_wait=lambda msg: err_console.print(msg, soft_wrap=True),
                            shards=shards, ray=ray)
    except KeyboardInterrupt:
        # the update runs on a staging copy that is discarded, so nothing the index held is lost
        raise Interrupted(f"the index at {index} is as it was before this run; run the command again to update it") from None
    if triples:
        from ragtune.cli.kg import index_triples

        index_triples(index, triples, triples_sep, rebuild=False, quiet=quiet, config=cfg, search=search)
    if quiet:
        return
    console.print(
        f"[bold]indexed[/bold] {index}: {report.files_read} file(s) read, {report.files_unchanged} unchanged, "
        f"{len(report.skipped)} skipped, {report.sources_removed} removed; "
        f"+{report.passages_added} / -{report.passages_removed} passages, {report.passages_total} in all; "
        f"retrievers {', '.join(report.retrievers)}; {report.seconds:.1f} s",
        soft_wrap=True, highlight=False,
    )
    if report.rows_skipped:
        console.print(f"  skipped {report.rows_skipped} row(s) without text", soft_wrap=True)
    for reason, files in report.skipped_by_reason().items():
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        console.print(f"  skipped {len(files)} ({reason}): {shown}", soft_wrap=True, markup=False, highlight=False)
