"""Answer and retrieval metrics as pure functions.

Answer metrics follow the official SQuAD v1.1 script (normalise: lowercase, drop punctuation and articles,
fold whitespace; max over gold answers). Text with CJK characters is scored by characters, as the CMRC 2018
script does, since whitespace tokens do not exist there.
"""
from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from typing import Iterable, Mapping, Sequence

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"，", "。", "！", "？", "、", "；", "：", "“", "”", "‘", "’", "（", "）", "《", "》", "【", "】", "·", "…", "—"}


def normalize_answer(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def answer_tokens(s: str) -> list[str]:
    norm = normalize_answer(s)
    if _CJK.search(norm):
        # CMRC-style: every CJK character is a token; runs of other characters stay words.
        return [t for t in re.findall(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\s\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+", norm)]
    return norm.split()


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    p = normalize_answer(prediction).replace(" ", "") if _CJK.search(prediction) else normalize_answer(prediction)
    for g in golds:
        gn = normalize_answer(g).replace(" ", "") if _CJK.search(g) else normalize_answer(g)
        if p == gn:
            return 1.0
    return 0.0


def _f1(pred: list[str], gold: list[str]) -> float:
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    pred = answer_tokens(prediction)
    return max((_f1(pred, answer_tokens(g)) for g in golds), default=0.0)


# Retrieval metrics: ``ranked`` is a list of doc ids best first, ``qrels`` maps doc id -> graded relevance.

def ndcg_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gain rel / log2(rank + 1), as trec_eval and BEIR compute it."""
    dcg = sum(qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, r in qrels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if qrels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def retrieval_scores(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100 and MRR@10 over the queries that have judgements."""
    names = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
    totals = dict.fromkeys(names, 0.0)
    qids = [q for q in qrels if any(r > 0 for r in qrels[q].values())]
    for q in qids:
        ranked = list(run.get(q, ()))
        totals["ndcg@10"] += ndcg_at_k(ranked, qrels[q], 10)
        totals["recall@10"] += recall_at_k(ranked, qrels[q], 10)
        totals["recall@100"] += recall_at_k(ranked, qrels[q], 100)
        totals["mrr@10"] += mrr_at_k(ranked, qrels[q], 10)
    n = max(len(qids), 1)
    return {k: v / n for k, v in totals.items()}


def dedupe_ranked(ids: Iterable[str]) -> list[str]:
    """Passage-level ranking -> document-level ranking: a document's rank is that of its best passage."""
    seen: set[str] = set()
    out = []
    for d in ids:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out
