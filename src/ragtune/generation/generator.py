"""``Generator``: one face over causal and seq2seq transformers for generating and scoring answers.

It wraps, and does not fork, ``transformers``: decoding is ``model.generate``; streaming is a streamer on that
same call (``generation.streaming``); scoring is one forward pass. The model loads on first use, so building a Generator
(e.g. for ``--help`` or a config check) costs nothing.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ragtune.atomic import write_json
from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.generation.options import Decoding, DecodeOptions, Generation, cut_at_stop, stop_index
from ragtune.generation.prompts import build_prompt, check_template
from ragtune.models.batching import input_order, length_buckets
from ragtune.models.lazy import LazyModel

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ragtune.config import GeneratorConfig
    from ragtune.generation.cached_step import CachedStep

__all__ = ["Generator", "Generation", "DecodeOptions", "Decoding"]
SETTINGS_FILE = "generator.json"


class Generator(LazyModel):
    """Answer generation and answer scoring over a causal (chat template when present) or seq2seq LM.

    ``model`` is a short name, path or hub id (see ``ragtune.models.registry.resolve``), a directory written by
    ``save`` (LoRA adapter directories included), or an already-loaded ``PreTrainedModel`` (then pass
    ``tokenizer`` too). Decoding settings given here are defaults; every call may override them.
    """

    def __init__(
        self,
        model: Any = "smollm2-135m-instruct",
        *,
        tokenizer: Any = None,
        device: str = "cpu",
        dtype: str = "float32",
        prompt_template: str | None = None,
        max_new_tokens: int = 64,
        min_new_tokens: int = 0,
        decoding: Decoding = "greedy",
        num_beams: int = 4,
        temperature: float = 0.7,
        top_p: float = 0.9,
        stop: Sequence[str] = (),
        use_chat_template: bool = True,
    ) -> None:
        self.model_name = model if isinstance(model, (str, Path)) else getattr(getattr(model, "config", None), "name_or_path", "")
        self.model_name = str(self.model_name)
        self.device = device
        self.dtype = dtype
        self.prompt_template = check_template(prompt_template) if prompt_template else None
        # kept as given: a call's own max_new_tokens caps min_new_tokens for that call only (DecodeOptions.updated)
        self.defaults = DecodeOptions(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, decoding=decoding,
                                      num_beams=num_beams, temperature=temperature, top_p=top_p, stop=tuple(stop))
        self.use_chat_template = use_chat_template
        self._model = None if isinstance(model, (str, Path)) else model
        self._tokenizer = tokenizer
        if self._model is not None:
            if tokenizer is None:
                raise RagtuneError("Generator(model=<loaded model>) also needs tokenizer=<its tokenizer>")
            self._prepare()

    @classmethod
    def from_config(cls, cfg: "GeneratorConfig", **overrides: Any) -> "Generator":
        """The generator ``cfg`` describes, on the backend it names (``overrides`` win; a CTranslate2 export
        given as the model runs on that backend)."""
        kw = dict(device=cfg.device, dtype=cfg.dtype, prompt_template=cfg.prompt_template, max_new_tokens=cfg.max_new_tokens,
                  min_new_tokens=cfg.min_new_tokens,
                  decoding=cfg.decoding, num_beams=cfg.num_beams, temperature=cfg.temperature, top_p=cfg.top_p, stop=tuple(cfg.stop),
                  backend=cfg.backend, compute_type=cfg.compute_type)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        model = kw.pop("model", None) or cfg.model
        from ragtune.generation.backends import backend_class

        return backend_class(kw.pop("backend"), model).create(model, **kw)

    @classmethod
    def create(cls, model: Any, *, compute_type: str | None = None, **kw: Any) -> "Generator":
        """``cls(model, **kw)``; backend-only settings (``compute_type``) are for the backends that have them."""
        return cls(model, **kw)

    # ---- loading -------------------------------------------------------------------------------------------

    backend = "torch"

    @property
    def hf_config(self) -> Any:
        """The transformers config of the model (architecture, special tokens)."""
        return self.model.config

    @property
    def is_seq2seq(self) -> bool:
        return bool(getattr(self.hf_config, "is_encoder_decoder", False))

    def _load(self) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        from ragtune.models.hardware import resolve_dtype
        from ragtune.models.registry import resolve

        try:
            path = resolve(self.model_name)
            adapter = Path(path, "adapter_config.json").exists()
            base = path
            if adapter:  # a LoRA directory: the base model is named inside it
                from peft import PeftConfig

                base = resolve(PeftConfig.from_pretrained(path).base_model_name_or_path)
            seq2seq = bool(getattr(AutoConfig.from_pretrained(base), "is_encoder_decoder", False))
            cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
            model = cls.from_pretrained(base, dtype=getattr(torch, resolve_dtype(self.dtype, self.device)))
            if adapter:
                from peft import PeftModel

                with _peft_quiet():
                    model = PeftModel.from_pretrained(model, path)
            tok_dir = path if Path(path, "tokenizer_config.json").exists() or not adapter else base
            self._tokenizer = self._tokenizer or AutoTokenizer.from_pretrained(tok_dir)
        except (OSError, ValueError) as e:
            raise RagtuneError(
                f"cannot load generator model {self.model_name!r} ({str(e).splitlines()[0]}); pass --model with a local "
                "model directory or a packaged name such as smollm2-135m-instruct"
            ) from None
        self._model = model.to(self.device).eval()
        self._prepare()

    def _special_tokens(self, gen_eos: Any) -> None:
        """Pad and end tokens from the tokenizer and ``gen_eos`` (the generation config's eos, may be None);
        every backend sets them up this way."""
        tok = self._tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        eos = gen_eos if gen_eos is not None else tok.eos_token_id
        self._eos: list[int] = [eos] if isinstance(eos, int) else list(eos)
        if self._chat():  # the turn ends with the template's end-of-turn token; generation must stop on it too
            end = tok.eos_token_id
            if end is not None and end not in self._eos:
                self._eos.insert(0, end)
        self._pad: int = tok.pad_token_id

    def _prepare(self) -> None:
        self._special_tokens(getattr(getattr(self._model, "generation_config", None), "eos_token_id", None))
        # Decoder-only batches are padded on the left so every row's next token comes from its last position.
        self._tokenizer.padding_side = "right" if self.is_seq2seq else "left"
        base = self._model.get_base_model() if hasattr(self._model, "get_base_model") else self._model
        params = inspect.signature(type(base).forward).parameters
        self._keeps_logits = "logits_to_keep" in params
        # transformers 5.x renamed ``past_key_values`` to ``cache``; speak whichever this version's forward takes
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"

    @property
    def eos_token_ids(self) -> list[int]:
        """Tokens that end an answer; the first is the one appended to training targets."""
        self.model  # noqa: B018 - loads on first use
        return self._eos

    @property
    def pad_token_id(self) -> int:
        self.model  # noqa: B018
        return self._pad

    def _chat(self) -> bool:
        return self.use_chat_template and not self.is_seq2seq and getattr(self.tokenizer, "chat_template", None) is not None

    # ---- prompts -------------------------------------------------------------------------------------------

    def build_prompt(self, question: str, passages: Sequence[Passage] = (), history: Sequence[tuple[str, str]] = (),
                     template: str | None = None) -> str:
        """The user message: numbered passages, the dialogue so far and the question (chat markup comes later);
        ``template`` replaces the generator's own (a dialogue reply's, a rewrite's)."""
        return build_prompt(question, passages, history, template or self.prompt_template)

    def render(self, prompt: str) -> str:
        """The exact text the model reads: the prompt inside the chat template when the model has one."""
        if self._chat():
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        return prompt

    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        tok = self.tokenizer
        chat = self._chat()
        # A rendered chat template already carries its special tokens; adding a bos again would be off-distribution.
        ids = tok([self.render(p) for p in prompts], add_special_tokens=not chat)["input_ids"]
        fallback = tok.bos_token_id if tok.bos_token_id is not None else self.eos_token_ids[0]
        return [list(x) or [fallback] for x in ids]

    def encode_targets(self, targets: Sequence[str], prompts: Sequence[str] | None = None) -> list[list[int]]:
        """Answer token ids followed by eos, so training teaches the model to stop after the answer."""
        tok = self.tokenizer
        out = []
        for i, t in enumerate(targets):
            t = t.strip()
            if not self.is_seq2seq and not self._chat() and prompts is not None and not prompts[i][-1:].isspace():
                t = " " + t  # after "Answer:" a byte-level BPE model emits " word", so score that token, not "word"
            out.append(list(tok(t, add_special_tokens=False)["input_ids"]) + [self.eos_token_ids[0]])
        return out

    # ---- generation ----------------------------------------------------------------------------------------

    def options(self, overrides: dict[str, Any]) -> DecodeOptions:
        """This generator's decoding defaults with a call's ``overrides`` applied (None leaves a default)."""
        return self.defaults.updated(overrides)

    def decode(self, token_ids: Sequence[int], stop: Sequence[str] = ()) -> str:
        """The answer text of generated ids: special tokens dropped, cut at the first stop string, stripped."""
        return cut_at_stop(self.tokenizer.decode(list(token_ids), skip_special_tokens=True), stop)

    def cached_step(self, prompts: Sequence[str]) -> "CachedStep":
        """Step-by-step next-token log-probs of ``prompts`` with a KV cache (see ``generation.cached_step``)."""
        from ragtune.generation.cached_step import CachedStep

        return CachedStep(self, prompts)

    def add_lora(self, *, r: int, alpha: float, dropout: float, target_modules: Any = "all-linear") -> Any:
        """Wrap the model in LoRA adapters (PEFT) and use the wrapped model from now on; returns it. Only the
        adapters require gradients; ``save`` then writes just the adapters."""
        from peft import LoraConfig, get_peft_model

        task = "SEQ_2_SEQ_LM" if self.is_seq2seq else "CAUSAL_LM"
        with _peft_quiet():
            self._model = get_peft_model(self.model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                                target_modules=target_modules, task_type=task))
        return self._model

    def _generate_kwargs(self, o: DecodeOptions) -> dict[str, Any]:
        kw: dict[str, Any] = dict(max_new_tokens=o.max_new_tokens, pad_token_id=self.pad_token_id, eos_token_id=self.eos_token_ids)
        if o.min_new_tokens:
            kw["min_new_tokens"] = o.min_new_tokens
        if o.decoding == "greedy":
            kw.update(do_sample=False, num_beams=1)
        elif o.decoding == "beam":
            kw.update(do_sample=False, num_beams=max(o.num_beams, o.num_return_sequences), num_return_sequences=o.num_return_sequences,
                      length_penalty=o.length_penalty, early_stopping=True)
        else:
            kw.update(do_sample=True, num_beams=1, temperature=o.temperature, top_p=o.top_p, num_return_sequences=o.num_return_sequences)
        if o.stop:
            kw.update(stop_strings=list(o.stop), tokenizer=self.tokenizer)
        return kw

    def _decoder_start(self, n: int) -> "torch.Tensor":
        """(n, 1) seq2seq decoder start tokens."""
        import torch

        start = self.model.config.decoder_start_token_id
        return torch.full((n, 1), self.pad_token_id if start is None else start, dtype=torch.long, device=self.device)

    def _causal_forward(self, ids: "torch.Tensor", att: "torch.Tensor", *, keep: int, **kw: Any) -> tuple[Any, "torch.Tensor"]:
        """One forward pass of a left-padded decoder-only batch, and its position ids: positions count real tokens
        only, and only the last ``keep`` positions get the vocabulary projection when the model allows it."""
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        keep_kw = {"logits_to_keep": keep} if self._keeps_logits else {}
        return self.model(input_ids=ids, attention_mask=att, position_ids=pos, **keep_kw, **kw), pos

    def _batch(self, prompts: Sequence[str]) -> dict[str, "torch.Tensor"]:
        tok = self.tokenizer
        chat = self._chat()
        enc = tok([self.render(p) for p in prompts], add_special_tokens=not chat, padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def generate(self, prompts: Sequence[str], *, sink: Any = None, **overrides: Any) -> list[Generation]:
        """Decode every prompt (batched, padded); with ``num_return_sequences=n`` the n results of prompt i are
        items ``i*n .. i*n+n-1``, best first for beam search. ``sink`` (a ``generation.streaming.TokenSink``)
        hears each row's text as it is decoded and may stop rows early (greedy and sampling, one result a row)."""
        import torch

        if not prompts:
            return []
        o = self.options(overrides)
        enc = self._batch(prompts)
        beam = o.decoding == "beam"
        watch: dict[str, Any] = {}
        if sink is not None and not beam and o.num_return_sequences == 1:
            from ragtune.generation.streaming import watch_kwargs

            watch = watch_kwargs(self.tokenizer, sink, enc["attention_mask"], self.eos_token_ids, o.stop)
        with torch.inference_mode():
            out = self.model.generate(**enc, **self._generate_kwargs(o), **watch, return_dict_in_generate=True,
                                      output_scores=beam, output_logits=not beam)
            seqs = out.sequences
            gen = seqs[:, enc["input_ids"].shape[1]:] if not self.is_seq2seq else seqs[:, 1:]
            if beam:
                steps = self.model.compute_transition_scores(seqs, out.scores, out.beam_indices, normalize_logits=False)
            else:  # raw model probabilities, not the temperature/top-p warped ones: logprob means P(y|x)
                logits = torch.stack(out.logits, 1).float()
                steps = logits.log_softmax(-1).gather(-1, gen[:, : logits.shape[1], None]).squeeze(-1)
        return [self._finish(gen[i].tolist(), steps[i].tolist(), o.stop) for i in range(gen.shape[0])]

    def _finish(self, ids: list[int], steps: list[float], stop: tuple[str, ...]) -> Generation:
        eos = set(self.eos_token_ids)
        n = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
        ids, steps = ids[:n], steps[:n]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = stop_index(text, stop)
        if cut is not None:
            text = text[:cut]
            # keep only the tokens up to the one that completes the answer text, so logprob scores what is shown
            for j in range(1, len(ids) + 1):
                if len(self.tokenizer.decode(ids[:j], skip_special_tokens=True).rstrip()) >= len(text.rstrip()):
                    ids, steps = ids[:j], steps[:j]
                    break
        return Generation(text.strip(), ids, float(sum(s for s in steps if s > float("-inf"))))

    def stream(self, prompt: str, **overrides: Any) -> Iterator[str]:
        """Yield the answer's text as it is generated (greedy/sampling; beam search yields once at the end): the
        same decoding as ``generate``, heard through a ``generation.streaming`` sink."""
        from ragtune.generation.streaming import Streamed, answer_pieces

        return answer_pieces(Streamed(lambda sink: self.generate([prompt], sink=sink, **overrides)[0]), lambda g: g.text)

    # ---- scoring -------------------------------------------------------------------------------------------

    def token_logprobs(
        self,
        prompts: Sequence[str],
        targets: Sequence[str],
        *,
        batch_size: int | None = None,
        vocab_mean: bool = False,
        max_tokens: int | None = None,
    ) -> tuple["torch.Tensor", ...]:
        """log P(target_t | prompt, target_<t) for each target token (eos included), with autograd when enabled.

        Returns ``(logp, mask)``, both (N, T), targets right-padded; ``logp`` is 0 at padding. With
        ``vocab_mean`` also ``mean_logp`` (N, T), the mean over the vocabulary of log P(v | prompt, target_<t)
        from the same forward pass (what label smoothing needs). Rows are scored in forward passes of
        similar length (see ``length_buckets``) of at most ``batch_size`` rows and, with ``max_tokens``, at most
        that many padded tokens; the result does not depend on the grouping.
        """
        import torch

        from ragtune.generation.scoring import score_rows

        if len(prompts) != len(targets):
            raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
        if not prompts:
            empty = torch.zeros(0, 0)
            return (empty, empty.bool(), empty) if vocab_mean else (empty, empty.bool())
        p_ids = self.encode_prompts(prompts)
        y_ids = self.encode_targets(targets, prompts)
        T = max(len(y) for y in y_ids)
        lengths = [len(p) + len(y) for p, y in zip(p_ids, y_ids)]
        groups = length_buckets(lengths, batch_size or len(prompts), max_tokens=max_tokens)
        parts, means = [], []
        for rows in groups:
            lp, mean = score_rows(self, [p_ids[i] for i in rows], [y_ids[i] for i in rows], T, vocab_mean)
            parts.append(lp)
            means.append(mean)
        inverse = torch.tensor(input_order(groups), device=parts[0].device)
        logp = torch.cat(parts, 0)[inverse]
        mask = torch.zeros(len(y_ids), T, dtype=torch.bool)
        for i, y in enumerate(y_ids):
            mask[i, : len(y)] = True
        mask = mask.to(logp.device)
        if vocab_mean:
            return logp, mask, torch.cat(means, 0)[inverse]
        return logp, mask

    def sequence_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[float]]:
        """log P(target | prompt) of every target of every prompt (``targets[i]`` are prompt i's), no gradients.
        A causal model prefills each prompt once and scores all its targets from that cache."""
        import torch

        from ragtune.generation.scoring import score_after_shared_prompt, split_like

        with torch.inference_mode():
            if self.is_seq2seq:  # the encoder reads prompt and target separately: nothing to share
                lp, mask = self.token_logprobs([p for p, ts in zip(prompts, targets) for _ in ts], [t for ts in targets for t in ts])
                return split_like((lp * mask).sum(-1).tolist(), targets)
            return [score_after_shared_prompt(self, self.encode_prompts([p])[0], self.encode_targets(list(ts), [p] * len(ts)))
                    if ts else [] for p, ts in zip(prompts, targets)]

    # ---- persistence ---------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        d = dict(self.defaults.__dict__)
        d.pop("num_return_sequences")
        d.pop("length_penalty")
        d["stop"] = list(d["stop"])
        return d | {"prompt_template": self.prompt_template, "dtype": self.dtype, "use_chat_template": self.use_chat_template}

    def save(self, path: str | Path, *, weights: bool = True) -> None:
        """Weights (or LoRA adapters), tokenizer and ``generator.json`` (decoding defaults, prompt template).

        ``weights=False`` writes only ``generator.json`` naming the model (a packaged name, hub id or absolute
        path), for a model that did not change, e.g. when only the retriever was fine-tuned.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        settings = self.settings()
        if weights:
            self.model.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
        else:
            name = self.model_name
            settings["base_model"] = str(Path(name).resolve()) if Path(name).exists() else name
        write_json(path / SETTINGS_FILE, settings)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", *, backend: str | None = None, **overrides: Any) -> "Generator":
        """A generator ``save`` wrote, on ``backend`` (default torch; a CTranslate2 export runs on that one)."""
        path = Path(path)
        if not path.is_dir():
            raise RagtuneError(f"no generator at {path}; pass a directory written by Generator.save or `ragtune train`")
        settings = json.loads((path / SETTINGS_FILE).read_text()) if (path / SETTINGS_FILE).exists() else {}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        model = settings.pop("base_model", None) or str(path)
        from ragtune.generation.backends import backend_class

        return backend_class(backend, model).create(model, device=device, **settings)


@contextlib.contextmanager
def _peft_quiet() -> Iterator[None]:
    """PEFT still reads transformers' old checkpointing names, which now warn (FutureWarning) on every wrap or load
    of an adapter: a user's warning about our dependency's code, not theirs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield
