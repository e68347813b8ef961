"""`ragtune train`: fine-tune a RAG model (generator, query encoder) on question-answer rows."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ragtune.cli.app import app, convert_app
from ragtune.cli.common import RAY_HELP, console, start_ray
from ragtune.config import Config


@app.command("train")
def train_cmd(
    index: Path = typer.Option(..., "--index", "-i", help="The index directory (with a dense retriever to train it)."),
    train: Path = typer.Option(..., "--train", help="JSONL rows: question, answers[, positive_ids, positive_texts]."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory; loads with RAG.from_pretrained."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="JSONL dev rows for EM/F1/Recall@k and the best checkpoint."),
    dev_fraction: Optional[float] = typer.Option(None, "--dev-fraction", help="Hold out this share of --train as dev."),
    mode: Optional[str] = typer.Option(None, "--mode", help="rag-sequence or rag-token."),
    objective: Optional[str] = typer.Option(None, "--objective", help="rag (default: generator and retriever end to end), "
                                            "or retriever only: contrastive (DPR, in-batch + BM25 hard negatives; rows "
                                            "need positive_ids or positive_texts) or lm-supervised (KL to the generator)."),
    hard_negatives: Optional[int] = typer.Option(None, "--hard-negatives", help="contrastive: BM25 negatives per question (0: in-batch only)."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters instead of the whole generator."),
    freeze: List[str] = typer.Option([], "--freeze", help="generator, query-encoder or doc-encoder; repeatable."),
    retriever: Optional[str] = typer.Option(None, "--retriever", help="Retriever of the index to train through (default dense; rescore trains the encoder over BM25's candidates)."),
    generator: Optional[str] = typer.Option(None, "--generator", help="Generator model (packaged name, path or hub id), or a "
                                             "trained directory to continue from (its generator and query encoder)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A ragtune.toml file."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimiser steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/checkpoint."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first bad row instead of skipping it."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    ray: Optional[str] = typer.Option(None, "--ray", help=RAY_HELP),
) -> None:
    """Fine-tune end to end (or the retriever alone); writes the best model, metrics.jsonl and a resumable
    checkpoint into OUT."""
    from ragtune.training.run import fine_tune, training_overrides

    start_ray(ray)  # every rank connects; shard actors are shared by name, so the index is loaded once
    cfg = Config.load(config)
    cfg = cfg.updated(training=training_overrides(mode=mode, lora=lora, freeze=freeze, max_steps=max_steps,
                                                  objective=objective, hard_negatives=hard_negatives))
    try:
        trainer, result = fine_tune(index, train, out, dev_file=dev, dev_fraction=dev_fraction, config=cfg, retriever=retriever,
                                    generator=generator, strict=strict, resume=resume, progress=not quiet)
    except KeyboardInterrupt:
        from ragtune.errors import Interrupted

        kept = (f"the last checkpoint in {out / 'checkpoint'} is kept: continue with --resume"
                if (out / "checkpoint").exists() else "no checkpoint was written yet")
        raise Interrupted(f"training stopped; {kept}") from None
    if quiet or not trainer.info.is_main:
        return
    last = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    console.print(f"[bold]trained[/bold] {result.steps} steps ({result.seconds:.1f} s), last loss {last}; model in {out}")
    if result.best:
        console.print("  best dev: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.best.items()))


def _articles(spec: Optional[str]) -> Optional[slice]:
    if spec is None:
        return None
    try:
        a, _, b = spec.partition(":")
        return slice(int(a) if a else None, int(b) if b else None)
    except ValueError:
        from ragtune.errors import RagtuneError

        raise RagtuneError(f"--articles takes START:END (article positions, e.g. 0:36), got {spec!r}") from None


def _store_lookup(index: Optional[Path], build):
    """``build(store)`` over the passage store of ``index`` (the lookups read it whole), or None without one."""
    if index is None:
        return None
    from ragtune.retrieval.index import Index

    with Index.open(index) as idx:
        return build(idx.store)


@convert_app.command("squad")
def convert_squad_cmd(
    squad: Path = typer.Argument(..., help="A SQuAD-style JSON file."),
    out: Path = typer.Option(..., "--out", "-o", help="The JSONL rows to write."),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help="Map each paragraph to the passage ids holding it in this index."),
    articles: Optional[str] = typer.Option(None, "--articles", help="START:END article positions, e.g. 0:36."),
) -> None:
    """One row per question with answers; its paragraph is the positive passage (as text, and as ids with --index)."""
    from ragtune.training.data import squad_rows, store_text_lookup, write_examples

    if not squad.is_file():
        from ragtune.errors import RagtuneError

        raise RagtuneError(f"no SQuAD file at {squad}")
    n = write_examples(squad_rows(squad, articles=_articles(articles), passage_ids=_store_lookup(index, store_text_lookup)), out)
    console.print(f"wrote {n} rows to {out}")


@convert_app.command("beir")
def convert_beir_cmd(
    dataset: Path = typer.Argument(..., help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."),
    out: Path = typer.Option(..., "--out", "-o", help="The JSONL rows to write."),
    split: str = typer.Option("train", "--split"),
    index: Optional[Path] = typer.Option(None, "--index", "-i", help="Map relevant documents to their passage ids in this index."),
) -> None:
    """One row per query with relevant documents (no answers: for `ragtune train --objective contrastive`)."""
    from ragtune.training.data import beir_rows, store_doc_lookup, write_examples

    if not (dataset / "qrels" / f"{split}.tsv").is_file():
        from ragtune.errors import RagtuneError

        raise RagtuneError(f"no BEIR qrels at {dataset / 'qrels' / (split + '.tsv')}")
    n = write_examples(beir_rows(dataset, split, doc_passage_ids=_store_lookup(index, store_doc_lookup)), out)
    console.print(f"wrote {n} rows to {out}")
