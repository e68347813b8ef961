"""``fine_tune``: an index directory and a JSONL file in, a ``RAG.from_pretrained`` directory out.

This is what ``ragtune train`` calls; it only assembles the pieces (config, data, RAG, Trainer).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from ragtune.config import Config
from ragtune.distributed.torch_ddp import init_distributed
from ragtune.errors import RagtuneError
from ragtune.training.checkpoint import seed_everything
from ragtune.training.data import load_examples, split_examples
from ragtune.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)

FREEZABLE = {"generator": "train_generator", "query-encoder": "train_query_encoder", "doc-encoder": "train_doc_encoder"}


def training_overrides(*, mode: str | None = None, lora: bool | None = None, freeze: Sequence[str] = (),
                       max_steps: int | None = None, objective: str | None = None,
                       hard_negatives: int | None = None) -> dict:
    """The ``training`` section fields a command line sets (None leaves the config's value)."""
    fields: dict = {"mode": mode, "lora": lora or None, "max_steps": max_steps, "objective": objective,
                    "hard_negatives": hard_negatives}
    for part in freeze:
        if part not in FREEZABLE:
            raise RagtuneError(f"cannot freeze {part!r}: choose from {', '.join(FREEZABLE)}")
        fields[FREEZABLE[part]] = False
    return fields


def fine_tune(
    index_dir: str | Path,
    train_file: str | Path,
    out_dir: str | Path,
    *,
    dev_file: str | Path | None = None,
    dev_fraction: float | None = None,
    config: Config | None = None,
    retriever: str | None = None,
    generator: str | None = None,
    strict: bool = False,
    resume: bool = False,
    progress: bool = True,
    max_seconds: float | None = None,
) -> tuple[Trainer, TrainResult]:
    """Train on ``train_file`` and save into ``out_dir``; ``max_seconds`` stops (and saves) once that much wall time
    has passed."""
    from ragtune.rag.model import RAG
    from ragtune.retrieval.index import Index

    cfg = config or Config()
    t = cfg.training
    index = Index.open(index_dir)
    known = set(int(i) for i in index.store.ids())
    # The contrastive objective learns from positives alone; the others score answers.
    need_answers = t.objective != "contrastive"
    train, report = load_examples(train_file, known_ids=known, strict=strict, require_answers=need_answers)
    dev = None
    if dev_file is not None:
        dev, _ = load_examples(dev_file, known_ids=known, strict=strict, require_answers=need_answers)
    elif dev_fraction:
        train, dev = split_examples(train, dev_fraction, seed=cfg.training.seed)
    retriever = retriever or "dense"  # the one default: training reaches the retriever through its encoder
    if retriever == "dense" and "dense" not in index.kinds and getattr(index, "has_graph", False):
        retriever = "paths"  # a knowledge graph: train its path scorer (ragtune.retrieval.paths)
    if retriever not in ("dense", "paths", "rescore") and (t.train_query_encoder or t.train_doc_encoder):
        raise RagtuneError(f"the {retriever} retriever has no encoder to train; add --freeze query-encoder")
    # a trained directory continues from its generator and query encoder (e.g. end to end after the retriever alone)
    rag = RAG.open(index_dir, model=generator or cfg.generator.model, retriever=retriever, mode=t.mode, k=cfg.rag.k,
                   config=cfg, device=t.device)
    negatives = None
    if t.objective == "contrastive" and t.hard_negatives > 0 and retriever == "paths":
        negatives = rag.retriever  # other paths of the question's own entities: the hardest negatives
    elif t.objective == "contrastive" and t.hard_negatives > 0 and "bm25" in index.kinds:
        negatives = index.retriever("bm25")
    info = init_distributed(t.device)
    seed_everything(t.seed)  # before the Trainer: LoRA's adapters are initialised from the global RNG
    trainer = Trainer(rag, train, dev, t, out_dir, index_dir=index_dir, progress=progress, negatives=negatives,
                      dist_info=info)
    log.info("precision %s (config %s), gradient checkpointing %s", trainer.precision, t.precision, trainer.checkpointing)
    return trainer, trainer.train(resume=resume, max_seconds=max_seconds)
