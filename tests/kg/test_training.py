"""`ragtune train` over a knowledge graph: the path scorer's query encoder learns from gold relation chains
(contrastive) and end to end with the generator (rag)."""
import json

import numpy as np
import torch

from ragtune.kg.graph import chain_text, relation_text
from tests.kg.kb import TRIPLES


def templated_rows():
    """One- and two-hop questions over the test KB's English part, two phrasings each, with gold chains."""
    out = {}
    en = [t for t in TRIPLES if t[0].isascii()]
    for s, r, o in en:
        out.setdefault((s, (r,)), set()).add(o)
        for s2, r2, o2 in en:
            if s2 == o:
                out.setdefault((s, (r, r2)), set()).add(o2)
    rows = []
    for (s, rels), tails in sorted(out.items()):
        words = [relation_text(r) for r in rels]
        q1 = f"what is the {words[-1]} of {s} " + "".join(f"'s {w} " for w in words[:-1]) + "?"
        q2 = f"{s} " + "".join(f"'s {w} " for w in words) + "?"
        for q in (q1, q2):
            rows.append({"question": q, "answers": sorted(tails), "positive_texts": [chain_text(words)]})
    return rows


def recall_at_1(retriever, rows):
    hits = retriever.search([r["question"] for r in rows], 1)
    return float(np.mean([retriever.table.chain_text(int(i)) == r["positive_texts"][0] for i, r in zip(hits.ids[:, 0], rows)]))


def test_contrastive_training_raises_path_recall(kg_world, tmp_path):
    from ragtune.config import Config
    from ragtune.kg.ingest import update_triples
    from ragtune.retrieval.dense import Encoder
    from ragtune.retrieval.index import Index
    from ragtune.training.run import fine_tune
    from tests.helpers.tiny_encoder import tiny_encoder_dir

    rows = templated_rows()
    assert len(rows) >= 40
    enc = tiny_encoder_dir(tmp_path / "enc", [r["question"] for r in rows] + [r["positive_texts"][0] for r in rows],
                           hidden=32, layers=1, vocab_size=200)
    index = tmp_path / "index"
    update_triples(index, [kg_world["kb"]], config=Config().updated(dense={"encoder": str(enc)}))  # dense scores only
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Index.open(index) as idx:
        before = recall_at_1(idx.retriever("paths"), rows)
    cfg = Config().updated(training={"objective": "contrastive", "batch_size": 16, "encoder_lr": 3e-3, "max_steps": 25,
                                     "hard_negatives": 2, "warmup_ratio": 0.0, "contrastive_temperature": 0.1,
                                     "eval_every": 1000, "save_every": 1000})
    trainer, result = fine_tune(index, train, tmp_path / "out", config=cfg, progress=False)
    assert trainer.rag.retriever.kind == "paths"
    assert result.losses[-1] < result.losses[0]
    with Index.open(index) as idx:
        r = idx.retriever("paths")
        r.encoder = Encoder.load(tmp_path / "out" / "query_encoder")
        after = recall_at_1(r, rows)
    assert before < 0.2 and after >= 0.5, (before, after)  # measured: 0.0 -> 0.69


def test_end_to_end_rag_training_moves_generator_and_path_scorer(kg_world, tmp_path):
    from ragtune.config import Config
    from ragtune.training.run import fine_tune
    from tests.helpers.tiny_lm import tiny_causal_lm

    rows = templated_rows()[:8]
    lm = tiny_causal_lm(tmp_path / "lm", [r["question"] + " " + " ".join(r["answers"]) for r in rows] + [" ".join(t) for t in TRIPLES],
                        hidden=32, layers=1, vocab_size=300)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = Config().updated(generator={"model": str(lm), "max_new_tokens": 3}, rag={"k": 3},
                           training={"objective": "rag", "batch_size": 4, "max_steps": 2, "lr": 1e-3, "encoder_lr": 1e-3,
                                     "warmup_ratio": 0.0, "eval_every": 1000, "save_every": 1000})
    from ragtune.rag.model import RAG

    start = {n: p.detach().clone() for n, p in RAG.from_index(kg_world["index"], retriever="paths", config=cfg).retriever.encoder.model.named_parameters()}
    trainer, result = fine_tune(kg_world["index"], train, tmp_path / "out", config=cfg, progress=False)
    assert result.steps == 2 and all(np.isfinite(result.losses))
    moved = [n for n, p in trainer.encoder.model.named_parameters() if not torch.allclose(p.detach(), start[n])]
    assert moved, "the path scorer's query encoder did not move"
    assert (tmp_path / "out" / "query_encoder").is_dir() and (tmp_path / "out" / "generator").is_dir()


def test_end_to_end_training_continues_from_a_trained_retriever(kg_world, tmp_path):
    """Two stages: the retriever alone, then end to end from its directory (``--generator OUT``); the second run's
    query encoder starts at the first one's weights, not at the index's encoder."""
    from ragtune.config import Config
    from ragtune.rag.model import RAG
    from ragtune.retrieval.dense import Encoder
    from ragtune.training.run import fine_tune
    from tests.helpers.tiny_lm import tiny_causal_lm

    rows = templated_rows()[:8]
    lm = tiny_causal_lm(tmp_path / "lm", [r["question"] + " " + " ".join(r["answers"]) for r in rows] + [" ".join(t) for t in TRIPLES],
                        hidden=32, layers=1, vocab_size=300)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {"batch_size": 4, "max_steps": 2, "encoder_lr": 1e-2, "warmup_ratio": 0.0, "eval_every": 1000, "save_every": 1000}
    stage1 = Config().updated(generator={"model": str(lm)}, rag={"k": 3},
                              training={**base, "objective": "contrastive", "hard_negatives": 0})
    fine_tune(kg_world["index"], train, tmp_path / "retriever", config=stage1, progress=False)
    trained = dict(Encoder.load(tmp_path / "retriever" / "query_encoder").model.named_parameters())
    untrained = dict(RAG.from_index(kg_world["index"], retriever="paths", config=stage1).retriever.encoder.model.named_parameters())
    assert any(not torch.allclose(trained[n], untrained[n]) for n in trained)

    stage2 = stage1.updated(training={**base, "objective": "rag", "max_steps": 1, "lr": 0.0, "encoder_lr": 0.0})
    trainer, result = fine_tune(kg_world["index"], train, tmp_path / "e2e", generator=str(tmp_path / "retriever"), config=stage2,
                                progress=False)
    assert result.steps == 1
    assert trainer.rag.retriever.kind == "paths"
    for n, p in trainer.encoder.model.named_parameters():  # lr 0: still exactly the stage-1 weights
        assert torch.equal(p.detach(), trained[n].detach()), n
