"""Running a retriever over judged queries (BEIR style) and reporting the metrics per query and overall."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ragtune.evaluation.metrics import dedupe_ranked, mrr_at_k, ndcg_at_k, recall_at_k, retrieval_scores
from ragtune.retrieval.base import EMPTY_ID, Retriever


@dataclass
class RetrievalEval:
    metrics: dict[str, float]
    per_query: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def write(self, out_dir: Path, title: str) -> tuple[Path, Path]:
        """A per-query JSONL and a markdown report; returns their paths."""
        out_dir.mkdir(parents=True, exist_ok=True)
        jsonl, md = out_dir / "per_query.jsonl", out_dir / "report.md"
        with open(jsonl, "w", encoding="utf-8") as f:
            for row in self.per_query:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        worst = sorted(self.per_query, key=lambda r: (r["ndcg@10"], r["qid"]))[:10]
        lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in self.metrics.items()]
        n = len(self.per_query)
        lines += ["", f"{n} queries, {self.seconds:.2f} s ({n / max(self.seconds, 1e-9):.1f} queries/s).", "",
                  "## Hardest queries (lowest nDCG@10)", "", "| qid | nDCG@10 | recall@100 | query |", "|---|---|---|---|"]
        lines += [f"| {r['qid']} | {r['ndcg@10']:.3f} | {r['recall@100']:.3f} | {r['query'][:80].replace('|', '/')} |" for r in worst]
        md.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return jsonl, md


def evaluate_retrieval(
    retriever: Retriever,
    doc_ids: Callable[[list[int]], list[str | None]],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    depth: int = 100,
    passages_per_doc: int = 1,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> RetrievalEval:
    """Score ``retriever`` on judged queries; passages map to documents by ``doc_ids`` (best passage wins).

    ``passages_per_doc`` widens the passage search so that ``depth`` distinct documents remain after dedup.
    """
    qids = [q for q in qrels if q in queries]
    k = depth * max(1, passages_per_doc)
    run: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for start in range(0, len(qids), batch_size):
        batch = qids[start : start + batch_size]
        hits = retriever.search([queries[q] for q in batch], k)
        flat = [int(i) for i in hits.ids.ravel() if i != EMPTY_ID]
        names = dict(zip(flat, doc_ids(flat)))
        for row, q in enumerate(batch):
            ranked = [names[int(i)] for i in hits.ids[row] if i != EMPTY_ID and names.get(int(i)) is not None]
            run[q] = dedupe_ranked(ranked)[:depth]
        if progress:
            progress(min(start + batch_size, len(qids)), len(qids))
    seconds = time.perf_counter() - t0
    per_query = [
        {
            "qid": q,
            "query": queries[q],
            "ndcg@10": ndcg_at_k(run[q], qrels[q], 10),
            "recall@100": recall_at_k(run[q], qrels[q], 100),
            "mrr@10": mrr_at_k(run[q], qrels[q], 10),
            "top10": run[q][:10],
            "relevant": sorted(d for d, r in qrels[q].items() if r > 0),
        }
        for q in qids
    ]
    return RetrievalEval(retrieval_scores(run, {q: qrels[q] for q in qids}), per_query, seconds)
