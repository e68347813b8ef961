"""Decoders for the two RAG marginals (Lewis et al. 2020, section 2.5).

* RAG-Token: beam search over the per-token mixture sum_z p(z|q) P(y_t|q,z,y_<t). ``beam_search`` is a plain
  beam search over any step function; ``MixtureStep`` is the step function that runs the k passage contexts of
  every beam as rows of one batch, with a KV cache, and mixes their next-token distributions.
* RAG-Sequence: beam search under each passage separately, union of the hypotheses, each rescored by the
  marginal sum_z p(z|q) P(y|q,z); "thorough" scores every hypothesis under every passage, "fast" takes
  P(y|q,z) ~ 0 for a hypothesis that beam search under z did not produce.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.generation.generator import Generator

NEG_INF = float("-inf")

# step(tokens, origin) -> (rows, V) log-probs of the next token, rows = batch * num_beams (row b*N + n).
# At the first call both are None; later, row r continues row origin[r] of the previous call with token tokens[r].
StepFn = Callable[[torch.Tensor | None, torch.Tensor | None], torch.Tensor]


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, the final eos included when the hypothesis finished
    logprob: float  # sum of the step log-probs
    score: float  # the ranking key: logprob / len(tokens) ** length_penalty


def beam_search(
    step: StepFn,
    batch_size: int,
    *,
    num_beams: int,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    length_penalty: float = 1.0,
    num_return: int = 1,
    min_new_tokens: int = 0,
) -> list[list[Hypothesis]]:
    """Beam search over ``step``; per batch row, the ``num_return`` best hypotheses, best first.

    As in transformers: 2N candidates per step so that N beams stay alive after some end in eos; a finished
    hypothesis is kept only when it ranks among the top N; a row stops once N hypotheses finished and no live
    beam can still beat the worst of them. Greedy decoding is ``num_beams=1``. Before ``min_new_tokens`` tokens,
    eos is not a candidate.
    """
    B, N = batch_size, num_beams
    eos = set(int(e) for e in eos_token_ids)

    def norm(logprob: float, length: int) -> float:
        return logprob / (max(length, 1) ** length_penalty)

    # The N start beams are identical; only the first may expand, or the top-N would hold N copies of one path.
    scores = torch.full((B, N), NEG_INF)
    scores[:, 0] = 0.0
    seqs: list[list[list[int]]] = [[[] for _ in range(N)] for _ in range(B)]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    tokens: torch.Tensor | None = None
    origin: torch.Tensor | None = None
    for t in range(max_new_tokens):
        logp = step(tokens, origin).float().cpu()
        V = logp.shape[-1]
        if t < min_new_tokens:
            logp = logp.index_fill(-1, torch.tensor([e for e in eos if e < V], dtype=torch.long), NEG_INF)
        cand = (scores[..., None] + logp.view(B, N, V)).view(B, N * V)
        top_s, top_i = cand.topk(min(2 * N, N * V), dim=-1)
        new_scores = torch.full((B, N), NEG_INF)
        new_tokens = torch.full((B * N,), next(iter(eos)), dtype=torch.long)
        new_origin = torch.arange(B * N)
        new_seqs: list[list[list[int]]] = [[[] for _ in range(N)] for _ in range(B)]
        for b in range(B):
            if done[b]:
                continue
            kept = 0
            for rank, (s, i) in enumerate(zip(top_s[b].tolist(), top_i[b].tolist())):
                if s == NEG_INF:
                    break
                n, v = divmod(i, V)
                seq = seqs[b][n] + [v]
                if v in eos:
                    if rank < N:
                        finished[b].append(Hypothesis(seq, s, norm(s, len(seq))))
                    continue
                new_scores[b, kept] = s
                new_tokens[b * N + kept] = v
                new_origin[b * N + kept] = b * N + n
                new_seqs[b][kept] = seq
                kept += 1
                if kept == N:
                    break
            best_alive = new_scores[b].max().item()
            if len(finished[b]) >= N:
                worst = sorted(h.score for h in finished[b])[-N]
                # logprobs only fall as a beam grows, so with no length penalty this bound is exact
                if best_alive == NEG_INF or norm(best_alive, t + 1) <= worst:
                    done[b] = True
            elif best_alive == NEG_INF:
                done[b] = True
        scores, seqs, tokens, origin = new_scores, new_seqs, new_tokens, new_origin
        if all(done):
            break
    out = []
    for b in range(B):
        hyps = list(finished[b])
        if not done[b]:  # ran out of length: the live beams count as answers too
            hyps += [Hypothesis(seqs[b][n], s, norm(s, len(seqs[b][n]))) for n, s in enumerate(scores[b].tolist()) if s > NEG_INF]
        hyps.sort(key=lambda h: h.score, reverse=True)
        out.append(hyps[:num_return])
    return out


class MixtureStep:
    """RAG-Token's step function: every beam's K passage contexts are rows of one ``Generator.cached_step``.

    Rows are ordered (question b, beam n, passage z). The prompts are encoded once (prefill) for all N beams;
    each step feeds one token per row, follows the beams' re-ranking, and returns
    logsumexp_z [ log p(z|q) + log P(y_t | q, z, y_<t) ] per beam.
    """

    def __init__(self, generator: "Generator", prompts: Sequence[Sequence[str]], doc_logp: torch.Tensor, num_beams: int):
        self.B, self.K = doc_logp.shape
        self.N = num_beams
        self.doc_logp = doc_logp.detach().float().to(generator.device)
        # (b, n, z) row order: the same K prompts repeated for each of the N beams of question b
        self.step = generator.cached_step([p for b in range(self.B) for _ in range(self.N) for p in prompts[b]])

    def __call__(self, tokens: torch.Tensor | None, origin: torch.Tensor | None) -> torch.Tensor:
        if tokens is None:
            logp = self.step.first()
        else:
            # beam row r continues beam origin[r]: its K passage rows continue that beam's K rows
            rows = (origin[:, None] * self.K + torch.arange(self.K)[None]).reshape(-1)
            logp = self.step.next(rows, tokens.repeat_interleave(self.K))
        logp = logp.view(self.B, self.N, self.K, -1)
        mix = torch.logsumexp(self.doc_logp[:, None, :, None] + logp, dim=2)
        return mix.reshape(self.B * self.N, -1)


def rag_token_decode(
    generator: "Generator",
    prompts: Sequence[Sequence[str]],
    doc_logp: torch.Tensor,
    *,
    num_beams: int = 1,
    max_new_tokens: int = 64,
    length_penalty: float = 1.0,
    min_new_tokens: int = 0,
) -> list[Hypothesis]:
    """The best RAG-Token hypothesis per question; ``prompts[b]`` holds the K single-passage prompts of question b."""
    step = MixtureStep(generator, prompts, doc_logp, num_beams)
    best = beam_search(step, doc_logp.shape[0], num_beams=num_beams, max_new_tokens=max_new_tokens,
                       eos_token_ids=generator.eos_token_ids, length_penalty=length_penalty, min_new_tokens=min_new_tokens)
    return [h[0] if h else Hypothesis([], NEG_INF, NEG_INF) for h in best]


@dataclass
class SequenceChoice:
    text: str
    logprob: float  # log sum_z p(z|q) P(y|q,z) of the chosen hypothesis (thorough) or its fast approximation
    seq_logp: torch.Tensor | None  # (K,) log P(y|q,z) of the chosen text under every passage; None in fast mode


def rag_sequence_decode(
    generator: "Generator",
    prompts: Sequence[Sequence[str]],
    doc_logp: torch.Tensor,
    *,
    thorough: bool = True,
    num_candidates: int = 1,
    **overrides,
) -> list[SequenceChoice]:
    """Beam search (or greedy, ``num_candidates=1``) under each passage, then pick the hypothesis with the highest
    marginal. ``prompts[b][z]`` is the prompt of question b with passage z alone.

    Thorough decoding needs log P(y|q,z) of every hypothesis y under every retrieved passage z. A pair whose y was
    generated under z and re-tokenizes to the generated tokens (eos included) already has it from the generation;
    the other pairs are scored with each passage prompt prefilled once for all its hypotheses
    (``Generator.sequence_logprobs``)."""
    B, K = doc_logp.shape
    doc_logp = doc_logp.detach().float().cpu()
    flat = [p for row in prompts for p in row]
    gens = generator.generate(flat, num_return_sequences=num_candidates, **overrides)
    hyps: list[dict[str, torch.Tensor]] = []  # per question: text -> (K,) log P(text | q, z) from the beams
    exact: list[dict[tuple[str, int], float]] = []  # (text, z) whose generation log-prob is the exact score
    for b in range(B):
        row_hyps: dict[str, torch.Tensor] = {}
        row_exact: dict[tuple[str, int], float] = {}
        for z in range(K):
            if doc_logp[b, z] == NEG_INF:
                continue
            for g in gens[(b * K + z) * num_candidates:(b * K + z + 1) * num_candidates]:
                row = row_hyps.setdefault(g.text, torch.full((K,), NEG_INF))
                row[z] = max(row[z].item(), g.logprob)
                if thorough and g.token_ids == generator.encode_targets([g.text], [prompts[b][z]])[0]:
                    row_exact[(g.text, z)] = g.logprob
        hyps.append(row_hyps)
        exact.append(row_exact)
    if thorough:
        cells = [(b, z) for b in range(B) for z in range(K) if doc_logp[b, z] != NEG_INF and hyps[b]]
        todo = [[t for t in hyps[b] if (t, z) not in exact[b]] for b, z in cells]
        scored = generator.sequence_logprobs([prompts[b][z] for b, z in cells], todo)
        for (b, z), texts, sums in zip(cells, todo, scored):
            exact[b].update({(t, z): s for t, s in zip(texts, sums)})
    out = []
    for b in range(B):
        texts = list(hyps[b])
        if not texts:
            out.append(SequenceChoice("", NEG_INF, None))
            continue
        if thorough:
            seq = torch.tensor([[exact[b].get((t, z), NEG_INF) for z in range(K)] for t in texts])
        else:
            seq = torch.stack([hyps[b][t] for t in texts])
        marg = torch.logsumexp(doc_logp[b][None] + seq, dim=-1)
        i = int(marg.argmax())
        out.append(SequenceChoice(texts[i], float(marg[i]), seq[i] if thorough else None))
    return out