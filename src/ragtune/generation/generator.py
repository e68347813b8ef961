"""``Generator``: one face over causal and seq2seq transformers for generating and scoring answers.

It wraps, and does not fork, ``transformers``: decoding is ``model.generate``; streaming is
``TextIteratorStreamer``; scoring is one forward pass. The model loads on first use, so building a Generator
(e.g. for ``--help`` or a config check) costs nothing.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.models.batching import input_order, length_buckets
from ragtune.generation.prompts import build_prompt, check_template
from ragtune.models.lazy import LazyModel

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ragtune.config import GeneratorConfig

Decoding = Literal["greedy", "beam", "sample"]
SETTINGS_FILE = "generator.json"


@dataclass
class Generation:
    """One decoded answer: ``text`` (stripped, cut at a stop string), the generated ``token_ids`` (with the final
    eos when the model emitted one) and ``logprob`` = sum of log P(token | prompt, previous tokens) over them."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprob: float = 0.0


@dataclass
class DecodeOptions:
    max_new_tokens: int = 64
    decoding: Decoding = "greedy"
    num_beams: int = 4
    temperature: float = 0.7
    top_p: float = 0.9
    stop: tuple[str, ...] = ()
    num_return_sequences: int = 1
    length_penalty: float = 1.0


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
        self.defaults = DecodeOptions(max_new_tokens, decoding, num_beams, temperature, top_p, tuple(stop))
        self.use_chat_template = use_chat_template
        self._model = None if isinstance(model, (str, Path)) else model
        self._tokenizer = tokenizer
        if self._model is not None:
            if tokenizer is None:
                raise RagtuneError("Generator(model=<loaded model>) also needs tokenizer=<its tokenizer>")
            self._prepare()

    @classmethod
    def from_config(cls, cfg: "GeneratorConfig", **overrides: Any) -> "Generator":
        kw = dict(device=cfg.device, dtype=cfg.dtype, prompt_template=cfg.prompt_template, max_new_tokens=cfg.max_new_tokens,
                  decoding=cfg.decoding, num_beams=cfg.num_beams, temperature=cfg.temperature, top_p=cfg.top_p, stop=tuple(cfg.stop))
        kw.update({k: v for k, v in overrides.items() if v is not None})
        model = kw.pop("model", None) or cfg.model
        return cls(model, **kw)

    # ---- loading -------------------------------------------------------------------------------------------

    @property
    def is_seq2seq(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    def _load(self) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

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
            model = cls.from_pretrained(base, dtype=getattr(torch, self.dtype))
            if adapter:
                from peft import PeftModel

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

    def _prepare(self) -> None:
        tok = self._tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        # Decoder-only batches are padded on the left so every row's next token comes from its last position.
        tok.padding_side = "right" if self.is_seq2seq else "left"
        gen_eos = getattr(getattr(self._model, "generation_config", None), "eos_token_id", None)
        eos = gen_eos if gen_eos is not None else tok.eos_token_id
        self._eos: list[int] = [eos] if isinstance(eos, int) else list(eos)
        if self._chat():  # the turn ends with the template's end-of-turn token; generation must stop on it too
            end = tok.eos_token_id
            if end is not None and end not in self._eos:
                self._eos.insert(0, end)
        self._pad: int = tok.pad_token_id
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
        return (self.use_chat_template and not getattr(self.model.config, "is_encoder_decoder", False)
                and getattr(self.tokenizer, "chat_template", None) is not None)

    # ---- prompts -------------------------------------------------------------------------------------------

    def build_prompt(self, question: str, passages: Sequence[Passage] = (), history: Sequence[tuple[str, str]] = ()) -> str:
        """The user message: numbered passages, the dialogue so far and the question (chat markup comes later)."""
        return build_prompt(question, passages, history, self.prompt_template)

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

    def _options(self, overrides: dict[str, Any]) -> DecodeOptions:
        unknown = set(overrides) - set(DecodeOptions.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown generation options: {sorted(unknown)}")
        d = self.defaults.__dict__ | {k: v for k, v in overrides.items() if v is not None}
        d["stop"] = tuple(d["stop"])
        if d["decoding"] not in ("greedy", "beam", "sample"):
            raise RagtuneError(f"unknown decoding {d['decoding']!r}; use greedy, beam or sample")
        return DecodeOptions(**d)

    def _generate_kwargs(self, o: DecodeOptions) -> dict[str, Any]:
        kw: dict[str, Any] = dict(max_new_tokens=o.max_new_tokens, pad_token_id=self.pad_token_id, eos_token_id=self.eos_token_ids)
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
        o = self._options(overrides)
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
        cut = _stop_at(text, stop)
        if cut is not None:
            text = text[:cut]
            # keep only the tokens up to the one that completes the answer text, so logprob scores what is shown
            for j in range(1, len(ids) + 1):
                if len(self.tokenizer.decode(ids[:j], skip_special_tokens=True).rstrip()) >= len(text.rstrip()):
                    ids, steps = ids[:j], steps[:j]
                    break
        return Generation(text.strip(), ids, float(sum(s for s in steps if s > float("-inf"))))

    def stream(self, prompt: str, **overrides: Any) -> Iterator[str]:
        """Yield the answer's text as it is generated (greedy/sampling; beam search yields once at the end)."""
        from threading import Thread

        import torch
        from transformers import TextIteratorStreamer

        o = self._options(overrides)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        enc = self._batch([prompt])
        kw = self._generate_kwargs(o) | {"num_return_sequences": 1}
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**enc, **kw, streamer=streamer)
            except BaseException as e:  # surfaced in the caller's thread below
                errors.append(e)
                streamer.end()

        thread = Thread(target=run, daemon=True)
        thread.start()
        hold = max((len(s) for s in o.stop), default=1) - 1  # never show the first characters of a stop string
        text, shown = "", 0
        for chunk in streamer:
            text += chunk
            cut = _stop_at(text, o.stop)
            end = cut if cut is not None else max(len(text) - hold, shown)
            piece = text[shown:end]
            if shown == 0:
                piece = piece.lstrip()
                if not piece:
                    continue
            if piece:
                yield piece
            shown = end
            if cut is not None:
                break
        thread.join()
        if errors:
            raise errors[0]
        if _stop_at(text, o.stop) is None and shown < len(text.rstrip()):
            rest = text[shown:].rstrip()
            yield rest.lstrip() if shown == 0 else rest

    # ---- scoring -------------------------------------------------------------------------------------------

    def token_logprobs(
        self,
        prompts: Sequence[str],
        targets: Sequence[str],
        *,
        batch_size: int | None = None,
        vocab_mean: bool = False,
    ) -> tuple["torch.Tensor", ...]:
        """log P(target_t | prompt, target_<t) for each target token (eos included), with autograd when enabled.

        Returns ``(logp, mask)``, both (N, T), targets right-padded; ``logp`` is 0 at padding. With
        ``vocab_mean`` also ``mean_logp`` (N, T), the mean over the vocabulary of log P(v | prompt, target_<t)
        from the same forward pass (what label smoothing needs). Rows are scored in forward passes of
        similar length (see ``length_buckets``) of at most ``batch_size`` rows; the result does not depend on
        the grouping.
        """
        import torch

        if len(prompts) != len(targets):
            raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
        if not prompts:
            empty = torch.zeros(0, 0)
            return (empty, empty.bool(), empty) if vocab_mean else (empty, empty.bool())
        p_ids = self.encode_prompts(prompts)
        y_ids = self.encode_targets(targets, prompts)
        T = max(len(y) for y in y_ids)
        lengths = [len(p) + len(y) for p, y in zip(p_ids, y_ids)]
        groups = length_buckets(lengths, batch_size or len(prompts))
        parts, means = [], []
        for rows in groups:
            lp, mean = self._score([p_ids[i] for i in rows], [y_ids[i] for i in rows], T, vocab_mean)
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

    def _score(self, p_ids: list[list[int]], y_ids: list[list[int]], width: int,
               vocab_mean: bool) -> tuple["torch.Tensor", "torch.Tensor | None"]:
        """(N, width) target log-probs of one forward pass, padded to ``width``, and the vocabulary-mean
        log-probs when ``vocab_mean`` (else None: a pass over (N, T, V) that most callers do not need)."""
        import torch

        dev, pad = self.device, self.pad_token_id
        T = max(len(y) for y in y_ids)
        N = len(p_ids)
        lens = torch.tensor([len(y) for y in y_ids])
        tgt = torch.full((N, T), pad, dtype=torch.long)
        for i, y in enumerate(y_ids):
            tgt[i, : len(y)] = torch.tensor(y)
        tgt = tgt.to(dev)
        if self.is_seq2seq:
            enc = self.tokenizer.pad({"input_ids": p_ids}, padding=True, return_tensors="pt")
            start = self.model.config.decoder_start_token_id
            start = pad if start is None else start
            dec = torch.cat([torch.full((N, 1), start, dtype=torch.long, device=dev), tgt[:, :-1]], 1)
            dec_mask = (torch.arange(T)[None] < lens[:, None]).to(dev)
            logits = self.model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev),
                                decoder_input_ids=dec, decoder_attention_mask=dec_mask.long(), use_cache=False).logits
        else:
            # Left-pad prompt+target so every target ends at the last column; then only the last T+1 positions
            # need the vocabulary projection (the (N, L, V) logits of long RAG prompts would not fit in memory).
            seqs = [p + y for p, y in zip(p_ids, y_ids)]
            L = max(len(s) for s in seqs)
            ids = torch.full((N, L), pad, dtype=torch.long)
            att = torch.zeros((N, L), dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, L - len(s):] = torch.tensor(s)
                att[i, L - len(s):] = 1
            pos = (att.cumsum(-1) - 1).clamp(min=0)
            kw = {"logits_to_keep": T + 1} if self._keeps_logits else {}
            logits = self.model(input_ids=ids.to(dev), attention_mask=att.to(dev), position_ids=pos.to(dev), use_cache=False, **kw).logits
            logits = logits[:, -(T + 1):-1]
            # kept column j predicts absolute column L-T+j; row i's target starts at column L-len_i, i.e. j = T-len_i
            j = ((T - lens)[:, None] + torch.arange(T)[None]).clamp(max=T - 1).to(dev)
            logits = logits.gather(1, j[..., None].expand(-1, -1, logits.shape[-1]))
        logits = logits.float()
        norm = logits.logsumexp(-1)
        valid = (torch.arange(T)[None] < lens[:, None]).to(dev)
        logp = (logits.gather(-1, tgt[..., None]).squeeze(-1) - norm).masked_fill(~valid, 0.0)
        mean = (logits.mean(-1) - norm).masked_fill(~valid, 0.0) if vocab_mean else None
        if width > T:
            logp = torch.nn.functional.pad(logp, (0, width - T))
            mean = torch.nn.functional.pad(mean, (0, width - T)) if mean is not None else None
        return logp, mean

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
        (path / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **overrides: Any) -> "Generator":
        path = Path(path)
        if not path.is_dir():
            raise RagtuneError(f"no generator at {path}; pass a directory written by Generator.save or `ragtune train`")
        settings = json.loads((path / SETTINGS_FILE).read_text()) if (path / SETTINGS_FILE).exists() else {}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        model = settings.pop("base_model", None) or str(path)
        return cls(model, device=device, **settings)


def _stop_at(text: str, stop: Sequence[str]) -> int | None:
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(cuts) if cuts else None
