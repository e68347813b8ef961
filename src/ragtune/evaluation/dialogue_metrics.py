"""Response metrics for knowledge-grounded dialogue, as pure functions of strings.

Everything is counted over ``ragtune.kg.graph.units``: NFKC, lowercase, punctuation dropped, single characters
for Chinese/Japanese/Korean and words otherwise. Chinese has no whitespace tokens, so KdConv's BLEU and
distinct-n are computed on characters; a word segmenter would make the numbers depend on its dictionary.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from ragtune.kg.graph import units

# Information values in KdConv are whole descriptive paragraphs; a reply quotes a clause of one, never all of it.
LONG_VALUE_UNITS = 20
QUOTE_WINDOW = 8


def _ngrams(toks: Sequence[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def bleu(hypotheses: Sequence[str], references: Sequence[str], n: int) -> float:
    """Corpus BLEU-n (Papineni et al. 2002) with one reference per hypothesis: the geometric mean, weights 1/n, of
    the clipped k-gram precisions k = 1..n, each summed over the corpus before dividing, times the brevity
    penalty exp(1 - r/c) when the total hypothesis length c is not longer than the total reference length r.

    No smoothing: if some order has no match the score is 0.0 (as nltk's ``corpus_bleu`` without a smoothing
    function), so sentence-level use on short replies is mostly zeros; report it on a corpus.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if n < 1:
        raise ValueError(f"BLEU order must be >= 1, got {n}")
    matches = [0] * n
    totals = [0] * n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = units(hyp), units(ref)
        hyp_len += len(h)
        ref_len += len(r)
        for k in range(1, n + 1):
            hc, rc = _ngrams(h, k), _ngrams(r, k)
            matches[k - 1] += sum((hc & rc).values())  # & takes the min count: the clipping
            totals[k - 1] += sum(hc.values())
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


def char_f1(prediction: str, reference: str) -> float:
    """Bag-of-units F1 (SQuAD's F1 over characters for CJK text). An empty prediction scores 1.0 only against an
    empty reference."""
    p, r = units(prediction), units(reference)
    if not p or not r:
        return float(not p and not r)
    same = sum((Counter(p) & Counter(r)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


def distinct(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): distinct n-grams over all n-grams of all texts; n-grams do not cross texts.
    0.0 when the texts have no n-gram at all."""
    if n < 1:
        raise ValueError(f"n-gram order must be >= 1, got {n}")
    seen: Counter = Counter()
    for t in texts:
        seen.update(_ngrams(units(t), n))
    total = sum(seen.values())
    return len(seen) / total if total else 0.0


def contains_value(response: str, values: Sequence[str]) -> float:
    """1.0 if the response states any of the knowledge values, else 0.0; both sides compared as their units
    joined (so spacing and punctuation do not matter).

    A value longer than ``LONG_VALUE_UNITS`` units counts as stated when any ``QUOTE_WINDOW`` consecutive units
    of it appear: KdConv's ``Information`` values are paragraphs that a reply quotes only in part, so demanding
    the whole value would score every such reply 0. Eight characters is a clause, long enough not to match
    by chance on common words. Empty values are ignored (they would be contained in everything).
    """
    text = "".join(units(response))
    for value in values:
        v = units(value)
        if not v:
            continue
        if len(v) <= LONG_VALUE_UNITS:
            if "".join(v) in text:
                return 1.0
        elif any("".join(v[i:i + QUOTE_WINDOW]) in text for i in range(len(v) - QUOTE_WINDOW + 1)):
            return 1.0
    return 0.0
