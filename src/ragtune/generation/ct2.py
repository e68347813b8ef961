"""``CT2Generator``: the ``Generator`` surface on CTranslate2, for answering fast (int8 on CPU, float16 on CUDA).

Prompts, tokenization, stop strings, result types and streaming are the torch generator's own (inherited); only
the model calls differ: decoding is ``generate_batch`` and scoring is ``score_batch``. There are no gradients,
so training stays on torch. RAG-Token mixes k next-token distributions at every step, which CTranslate2's
decoding loop cannot; ``cached_step`` runs on a torch twin of the same model and says so once.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ragtune.errors import RagtuneError
from ragtune.generation.generator import Generator
from ragtune.generation.options import DecodeOptions, Generation, stop_index

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ragtune.generation.cached_step import CachedStep

log = logging.getLogger(__name__)
_warned_rag_token = False


def merge_lora(adapter_dir: Path, into: Path) -> Path:
    """A LoRA directory's adapters merged into its base model (loaded as the torch generator loads it, so packaged
    base names resolve), saved as a plain transformers model with its tokenizer."""
    g = Generator(str(adapter_dir))
    g.model.merge_and_unload().save_pretrained(into)
    g.tokenizer.save_pretrained(into)
    return into


def same_length_groups(rows: Sequence[Sequence[int]]) -> list[list[int]]:
    """Row indices grouped by prompt length. CTranslate2 prefills a batch only up to its shortest prompt and feeds
    the rest of the longer prompts one decoding step per token; rows of one length are prefilled whole."""
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(len(r), []).append(i)
    return list(groups.values())


def compute_type_for(device: str, compute_type: str) -> str:
    """``auto``: int8 on CPU (the measured speed-up), float16 on CUDA."""
    if compute_type != "auto":
        return compute_type
    return "float16" if device.startswith("cuda") else "int8"


class CT2Generator(Generator):
    backend = "ctranslate2"

    def __init__(self, model: Any = "smollm2-135m-instruct", *, compute_type: str = "auto", **kw: Any) -> None:
        if not isinstance(model, (str, Path)):
            raise RagtuneError("the ctranslate2 backend loads a model by name or path, not a loaded torch model")
        super().__init__(model, **kw)
        self.compute_type = compute_type
        self._twin: Generator | None = None
        self._source: str | None = None

    @classmethod
    def create(cls, model: Any, *, compute_type: str | None = None, **kw: Any) -> "CT2Generator":
        return cls(model, compute_type=compute_type or "auto", **kw)

    # ---- loading -------------------------------------------------------------------------------------------

    @property
    def hf_config(self) -> Any:
        return None  # only decoder-only models are exported; their chat template lives in the tokenizer

    @property
    def is_seq2seq(self) -> bool:
        return False

    def _load(self) -> None:
        import json

        from ragtune.models.ctranslate2 import MARKER, cached_export, require
        from ragtune.models.registry import resolve

        require()
        import ctranslate2
        import torch
        from transformers import AutoTokenizer

        path = Path(resolve(self.model_name))
        if not path.exists():
            raise RagtuneError(f"the ctranslate2 backend needs a local model; {self.model_name!r} is not one")
        export = cached_export(path, merge=merge_lora)
        self._source = json.loads((export / MARKER).read_text()).get("source")
        device, _, index = self.device.partition(":")
        try:
            # as many threads as torch uses, so one setting (torch.set_num_threads) governs both backends
            model = ctranslate2.Generator(str(export), device=device, device_index=int(index or 0),
                                          compute_type=compute_type_for(self.device, self.compute_type),
                                          intra_threads=torch.get_num_threads())
        except (ValueError, RuntimeError) as e:
            raise RagtuneError(f"CTranslate2 cannot run {self.model_name!r} ({str(e).splitlines()[0]}); the fast backend "
                               "runs decoder-only models: use --backend torch") from None
        self._tokenizer = self._tokenizer or AutoTokenizer.from_pretrained(str(export))
        self._model = model
        self._prepare_ct2(export)

    def _prepare_ct2(self, export: Path) -> None:
        import json

        gen_cfg = export / "generation_config.json"
        self._special_tokens(json.loads(gen_cfg.read_text()).get("eos_token_id") if gen_cfg.exists() else None)

    # ---- generation ----------------------------------------------------------------------------------------

    def _tokens(self, ids: Sequence[Sequence[int]]) -> list[list[str]]:
        return [self.tokenizer.convert_ids_to_tokens(list(x)) for x in ids]

    def generate(self, prompts: Sequence[str], *, sink: Any = None, **overrides: Any) -> list[Generation]:
        """As ``Generator.generate``: n results a prompt at ``i*n .. i*n+n-1``; ``sink`` streams greedy and
        sampled rows; ``logprob`` is under the model's raw distribution, as on torch."""
        if not prompts:
            return []
        o = self.options(overrides)
        p_ids = self.encode_prompts(prompts)
        n = o.num_return_sequences
        if o.decoding == "beam":
            return self._beam(p_ids, o)
        rows = [p for p in p_ids for _ in range(n)]
        ids: list[list[int]] = [[] for _ in rows]
        steps: list[list[float]] = [[] for _ in rows]
        streamer = None
        if sink is not None and n == 1:
            from ragtune.generation.streaming import _BatchStreamer

            streamer = _BatchStreamer(self.tokenizer, sink, self.eos_token_ids, o.stop, [len(p) for p in rows])
            streamer.started = True

        # The callback runs on CTranslate2's worker thread, which may hold it after the call returns: it must not
        # reference this generator, or dropping the last reference there destroys the model from inside its own
        # thread pool (std::system_error, abort).
        decode, stop = self.tokenizer.decode, o.stop

        def stepper(members: list[int]):
            def step(s: Any) -> bool:
                row = members[s.batch_id]
                ids[row].append(s.token_id)
                steps[row].append(s.log_prob)
                if streamer is not None:
                    return streamer.put_token(row, s.token_id)
                # stop strings end a row as soon as its text holds one (the torch backend does the same)
                return bool(stop) and stop_index(decode(ids[row], skip_special_tokens=True), stop) is not None
            return step

        sampling = dict(sampling_topk=1) if o.decoding == "greedy" else \
            dict(sampling_topk=0, sampling_topp=o.top_p, sampling_temperature=o.temperature)
        for members in same_length_groups(rows):
            self.model.generate_batch(self._tokens([rows[i] for i in members]), max_length=o.max_new_tokens,
                                      min_length=o.min_new_tokens, include_prompt_in_result=False, end_token=self.eos_token_ids,
                                      return_end_token=True, return_scores=True, callback=stepper(members), **sampling)
        if streamer is not None:
            streamer.end()
        if o.decoding == "sample" or o.min_new_tokens:
            # the step log-probs are of the warped distribution (eos held back too); report the model's own
            steps = self._step_logprobs(rows, ids)
        return [self._finish(i, s, o.stop) for i, s in zip(ids, steps)]

    def _beam(self, p_ids: list[list[int]], o: DecodeOptions) -> list[Generation]:
        n = o.num_return_sequences
        found: list[list[list[int]]] = [[] for _ in p_ids]
        for members in same_length_groups(p_ids):
            results = self.model.generate_batch(self._tokens([p_ids[i] for i in members]), max_length=o.max_new_tokens,
                                                min_length=o.min_new_tokens, include_prompt_in_result=False,
                                                end_token=self.eos_token_ids, return_end_token=True, beam_size=max(o.num_beams, n), num_hypotheses=n,
                                                length_penalty=o.length_penalty)
            for i, r in zip(members, results):
                found[i] = [list(r.sequences_ids[h]) for h in range(n)]
        rows = [p for p in p_ids for _ in range(n)]
        ids = [hyp for hyps in found for hyp in hyps]
        return [self._finish(i, s, o.stop) for i, s in zip(ids, self._step_logprobs(rows, ids))]

    def _step_logprobs(self, prompts: list[list[int]], answers: list[list[int]]) -> list[list[float]]:
        """log P(answer token | prompt, previous answer tokens) of each token, by scoring passes over rows of similar
        length: ``score_batch`` computes a batch's padding too (k passage prompts differ in length by 2x and more)."""
        from ragtune.models.batching import length_buckets

        todo = [i for i, a in enumerate(answers) if a]
        rows = [prompts[i] + answers[i] for i in todo]
        out: list[list[float]] = [[] for _ in answers]
        for group in length_buckets([len(r) for r in rows], max_rows=len(rows)):
            scored = self.model.score_batch(self._tokens([rows[j] for j in group]), max_input_length=0)
            for j, r in zip(group, scored):
                out[todo[j]] = list(r.log_probs[-len(answers[todo[j]]):])
        return out

    def cached_step(self, prompts: Sequence[str]) -> "CachedStep":
        return self._torch_twin().cached_step(prompts)

    def _torch_twin(self) -> Generator:
        """The same model on torch, for what CTranslate2 cannot do (RAG-Token's per-step mixture)."""
        global _warned_rag_token
        if self._twin is None:
            self.model  # noqa: B018 - loads, and learns the export's source
            source = self._source
            if not source or not Path(source).exists():
                raise RagtuneError("rag-token needs the torch model, and this CTranslate2 export's source is gone; "
                                   "use --mode rag-sequence or concat, or --backend torch")
            if not _warned_rag_token:
                log.warning("rag-token runs on the torch backend: CTranslate2 cannot mix k next-token distributions per step")
                _warned_rag_token = True
            self._twin = Generator(source, device=self.device, prompt_template=self.prompt_template,
                                   use_chat_template=self.use_chat_template, tokenizer=None)
        return self._twin

    def add_lora(self, **kw: Any) -> Any:
        raise RagtuneError("training needs the torch backend: drop --backend ctranslate2 (or [generator] backend)")

    # ---- scoring -------------------------------------------------------------------------------------------

    def token_logprobs(self, prompts: Sequence[str], targets: Sequence[str], *, batch_size: int | None = None,
                       vocab_mean: bool = False, max_tokens: int | None = None) -> tuple["torch.Tensor", ...]:
        """As ``Generator.token_logprobs`` (``(logp, mask)``, (N, T)), from ``score_batch``; no gradients
        (``max_tokens`` is accepted for the same signature: CTranslate2 sizes its own batches)."""
        import torch

        if vocab_mean:
            raise RagtuneError("label smoothing scores need the torch backend")
        if len(prompts) != len(targets):
            raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
        if not prompts:
            empty = torch.zeros(0, 0)
            return empty, empty.bool()
        p_ids = self.encode_prompts(prompts)
        y_ids = self.encode_targets(targets, prompts)
        T = max(len(y) for y in y_ids)
        logp = torch.zeros(len(y_ids), T)
        mask = torch.zeros(len(y_ids), T, dtype=torch.bool)
        for i, lp in enumerate(self._step_logprobs(p_ids, y_ids)):
            logp[i, : len(lp)] = torch.tensor(lp)
            mask[i, : len(lp)] = True
        return logp, mask

    def sequence_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[float]]:
        """As ``Generator.sequence_logprobs``, all pairs scored together (``_step_logprobs``: rows of similar length
        per ``score_batch``)."""
        pairs = [(p, t) for p, ts in zip(prompts, targets) for t in ts]
        if not pairs:
            return [[] for _ in prompts]
        p_ids = self.encode_prompts([p for p, _ in pairs])
        y_ids = self.encode_targets([t for _, t in pairs], [p for p, _ in pairs])
        from ragtune.generation.scoring import split_like

        return split_like([sum(lp) for lp in self._step_logprobs(p_ids, y_ids)], targets)

    def save(self, path: str | Path, *, weights: bool = True) -> None:
        if weights:
            raise RagtuneError("a CTranslate2 generator is saved by `ragtune export`, not Generator.save")
        super().save(path, weights=False)
