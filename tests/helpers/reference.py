"""Reference implementations that faster code is checked against (tests) and timed against (benchmarks)."""
from __future__ import annotations

import torch

from ragtune.rag.decoding import NEG_INF


def reference_decode(generator, prompts, doc_logp, num_candidates, **overrides):
    """The previous thorough decoder: every hypothesis re-scored under every passage by a full forward pass."""
    B, K = doc_logp.shape
    gens = generator.generate([p for row in prompts for p in row], num_return_sequences=num_candidates, **overrides)
    out = []
    for b in range(B):
        texts = []
        for z in range(K):
            if doc_logp[b, z] != NEG_INF:
                for g in gens[(b * K + z) * num_candidates:(b * K + z + 1) * num_candidates]:
                    if g.text not in texts:
                        texts.append(g.text)
        with torch.inference_mode():
            lp, mask = generator.token_logprobs([prompts[b][z] for _ in texts for z in range(K)], [t for t in texts for _ in range(K)])
        seq = (lp * mask).sum(-1).view(len(texts), K)
        marg = torch.logsumexp(doc_logp[b][None] + seq, -1)
        i = int(marg.argmax())
        out.append((texts[i], float(marg[i]), seq[i]))
    return out
