"""Token-by-token decoding with a KV cache (what ``Generator.cached_step`` returns), for decoders that mix several
rows' next-token distributions (RAG-Token) and so cannot use ``model.generate``.

``CachedStep(generator, prompts)``: ``first()`` encodes the prompts (prefill) and returns each row's next-token
log-probs; ``next(rows, tokens)`` continues row ``rows[i]`` of the previous call with ``tokens[i]`` (the cache is
reordered to follow, so beams may fork and die) and returns the new rows' log-probs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ragtune.generation.generator import Generator


class CachedStep:
    def __init__(self, generator: "Generator", prompts: Sequence[str]):
        self.g = generator
        self.prompts = list(prompts)
        self.cache: Any = None

    @torch.inference_mode()
    def first(self) -> torch.Tensor:
        """(N, V) log P(first answer token | prompt) of each prompt."""
        g, model = self.g, self.g.model
        enc = g._batch(self.prompts)
        self.att = enc["attention_mask"]
        if g.is_seq2seq:
            self.enc_out = model.get_encoder()(input_ids=enc["input_ids"], attention_mask=self.att)
            dec = g._decoder_start(len(self.prompts))
            out = model(encoder_outputs=self.enc_out, attention_mask=self.att, decoder_input_ids=dec, use_cache=True)
        else:
            out, pos = g._causal_forward(enc["input_ids"], self.att, keep=1, use_cache=True)
            self.next_pos = pos[:, -1:] + 1
        return self._logp(out)

    @torch.inference_mode()
    def next(self, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(len(rows), V) next-token log-probs after appending ``tokens[i]`` to row ``rows[i]``."""
        g, model = self.g, self.g.model
        rows = rows.to(g.device)
        self.cache.reorder_cache(rows)
        self.att = self.att[rows]
        step_ids = tokens.to(g.device)[:, None]
        cache = {g.cache_kwarg: self.cache}
        if g.is_seq2seq:
            self.enc_out.last_hidden_state = self.enc_out.last_hidden_state[rows]
            out = model(encoder_outputs=self.enc_out, attention_mask=self.att, decoder_input_ids=step_ids, use_cache=True, **cache)
        else:
            self.next_pos = self.next_pos[rows]
            self.att = torch.cat([self.att, self.att.new_ones(self.att.shape[0], 1)], 1)
            out = model(input_ids=step_ids, attention_mask=self.att, position_ids=self.next_pos, use_cache=True, **cache)
            self.next_pos = self.next_pos + 1
        return self._logp(out)

    def _logp(self, out: Any) -> torch.Tensor:
        self.cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        return out.logits[:, -1].float().log_softmax(-1)
