"""``RAG``: a retriever, a passage store and a generator wired into the three answer models.

For question q with top-k hits scored f(q, z), p(z|q) = softmax(f / doc_temperature) over the k hits, and

* ``concat``: one prompt with all k passages, one generation (the common "stuff the context" RAG);
* ``rag-sequence``: P(y|q) = sum_z p(z|q) P(y|q,z);
* ``rag-token``: P(y_t|q,y_<t) = sum_z p(z|q) P(y_t|q,z,y_<t).

Every answer carries citations with prior p(z|q) and posterior p(z|q,y) ∝ p(z|q) P(y|q,z); in concat mode the
answer is scored under each passage alone to get P(y|q,z).

A training output directory (what ``RAG.from_pretrained`` reads and ``RAG.save_pretrained`` writes)::

    model_dir/generator/        Generator.save: save_pretrained weights or LoRA adapters, tokenizer, generator.json
    model_dir/query_encoder/    optional: retrieval.dense.Encoder.save of the trained query encoder
    model_dir/dense_index/      optional: the passages' vectors from a trained document encoder (VectorIndex.save)
    model_dir/ragtune.json      {"index": "<index dir, absolute or relative to model_dir>",
                                 "rag": {"mode": ..., "k": ..., "doc_temperature": ..., "retriever": ...}}
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.generation.generator import Generator
from ragtune.rag.output import Citation, RagOutput
from ragtune.retrieval.base import EMPTY_ID, Hits

MODES = ("concat", "rag-sequence", "rag-token", "path")  # path: knowledge-graph answer, no generator (ragtune.kg)
META_FILE = "ragtune.json"
# RAG-level options that ``ask`` accepts besides the generator's decoding options
_RAG_OPTIONS = ("mode", "k", "thorough")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise RagtuneError(f"unknown RAG mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def require_questions(questions: Sequence[str]) -> None:
    """An empty question would still run the model and answer from arbitrary passages: refuse it."""
    for q in questions:
        if not isinstance(q, str) or not q.strip():
            raise RagtuneError("the question is empty: ask something")


class AnswerStream:
    """Iterate for the answer's text chunks; after the last one, ``output`` holds the full ``RagOutput``."""

    def __init__(self, chunks: Iterator[str], finish: Callable[[str], RagOutput]):
        self._chunks, self._finish = chunks, finish
        self.text = ""
        self.output: RagOutput | None = None

    def __iter__(self) -> Iterator[str]:
        for c in self._chunks:
            self.text += c
            yield c
        self.output = self._finish(self.text.strip())


class RAG:
    """Retrieve-then-generate with the RAG marginals; see the module docstring for the modes.

    ``store`` is anything with ``get(ids) -> list[Passage | None]``; ``retriever`` anything with
    ``search(queries, k) -> Hits`` (a ``RerankedRetriever`` when a cross-encoder reorders the candidates).
    """

    def __init__(
        self,
        retriever: Any,
        generator: Generator,
        store: Any,
        *,
        mode: str = "concat",
        k: int = 5,
        doc_temperature: float = 1.0,
        thorough: bool = True,
    ) -> None:
        self.retriever = retriever
        self.generator = generator
        self.store = store
        self.mode = check_mode(mode)
        self.k = k
        self.doc_temperature = doc_temperature
        self.thorough = thorough
        self.retriever_kind = getattr(retriever, "kind", None)
        self.last_timing: dict[str, float] = {"retrieval": 0.0, "generation": 0.0}

    # ---- construction --------------------------------------------------------------------------------------

    @classmethod
    def from_index(
        cls,
        index_dir: str | Path,
        *,
        retriever: str | None = "bm25",
        model: str | None = None,
        mode: str | None = None,
        k: int | None = None,
        config: Any = None,
        device: str = "cpu",
        generator: Generator | None = None,
    ) -> "RAG":
        """A RAG over a ``ragtune index`` directory; ``config`` (a ``ragtune.config.Config``) defaults to the
        index's own; explicit arguments win over it."""
        from ragtune.retrieval.index import Index

        index = Index.open(index_dir)
        cfg = config or index.config
        gen = generator or Generator.from_config(cfg.generator, model=model, device=device)
        kind = retriever or cfg.rag.retriever
        from ragtune.retrieval.rerank import maybe_rerank

        rerank_cfg = cfg.rerank.model_copy(update={"device": device})
        rag = cls(maybe_rerank(index.retriever(kind, device=device), rerank_cfg, index.store), gen, index.store,
                  mode=mode or cfg.rag.mode, k=k or cfg.rag.k, doc_temperature=cfg.rag.doc_temperature)
        rag.index = index
        rag.retriever_kind = kind
        return rag

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, index_dir: str | Path | None = None, device: str = "cpu",
                        mode: str | None = None, k: int | None = None, retriever: str | None = None) -> "RAG":
        """Load a ``ragtune train`` output directory (layout in the module docstring)."""
        model_dir = Path(model_dir)
        meta_path = model_dir / META_FILE
        if not meta_path.exists():
            raise RagtuneError(f"{model_dir} is not a trained RAG model (no {META_FILE}); pass the output directory of `ragtune train`")
        meta = json.loads(meta_path.read_text())
        rag_cfg = meta.get("rag", {})
        if index_dir is None:
            if not meta.get("index"):
                raise RagtuneError(f"{meta_path} names no index; pass --index DIR")
            index_dir = Path(meta["index"])
            index_dir = index_dir if index_dir.is_absolute() else model_dir / index_dir
        generator = Generator.load(model_dir / "generator", device=device)
        rag = cls.from_index(index_dir, retriever=retriever or rag_cfg.get("retriever") or "bm25", mode=mode or rag_cfg.get("mode"),
                             k=k or rag_cfg.get("k"), device=device, generator=generator)
        if "doc_temperature" in rag_cfg:
            rag.doc_temperature = float(rag_cfg["doc_temperature"])
        apply_trained_retriever(rag.retriever, model_dir, device=device)
        return rag

    def save_pretrained(self, model_dir: str | Path, *, index_dir: str | Path | None = None, query_encoder: Any = None) -> None:
        """Write the layout ``from_pretrained`` reads (the index itself is referenced, not copied)."""
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        self.generator.save(model_dir / "generator")
        if query_encoder is not None:
            query_encoder.save(model_dir / "query_encoder")
        index = index_dir or getattr(getattr(self, "index", None), "path", None)
        meta = {"index": str(Path(index).resolve()) if index else None,
                "rag": {"mode": self.mode, "k": self.k, "doc_temperature": self.doc_temperature, "retriever": self.retriever_kind}}
        (model_dir / META_FILE).write_text(json.dumps(meta, indent=2))

    # ---- retrieval -----------------------------------------------------------------------------------------

    def retrieve(self, questions: Sequence[str], k: int | None = None) -> Hits:
        return self.retriever.search(list(questions), k or self.k)

    def passages(self, hits: Hits) -> list[list[Passage | None]]:
        """The stored passages of the hits, row by row (None at empty slots)."""
        flat = [int(i) for i in hits.ids.reshape(-1)]
        real = [i for i in flat if i != EMPTY_ID]
        found = dict(zip(real, self.store.get(real))) if real else {}
        got = [found.get(i) if i != EMPTY_ID else None for i in flat]
        return [got[r * hits.k:(r + 1) * hits.k] for r in range(len(hits))]

    def doc_log_prior(self, hits: Hits, doc_scores: Any = None, passages: list[list[Passage | None]] | None = None) -> Any:
        """log p(z|q) (B, K). A row with no usable passage keeps slot 0 with p = 1 (it is then answered closed-book)."""
        import torch

        from ragtune.rag.marginals import doc_log_prior

        dev = self.generator.device
        valid = torch.from_numpy(hits.ids != EMPTY_ID)
        if passages is not None:
            valid &= torch.tensor([[p is not None for p in row] for row in passages], dtype=torch.bool).view_as(valid)
        empty = ~valid.any(-1)
        valid[empty, 0] = True
        scores = doc_scores if doc_scores is not None else torch.from_numpy(np.nan_to_num(hits.scores, neginf=0.0, posinf=0.0))
        scores = scores.to(dev).float()
        scores = torch.where(empty.to(dev)[:, None], torch.zeros_like(scores), scores)
        return doc_log_prior(scores, self.doc_temperature, valid.to(dev))

    # ---- prompts -------------------------------------------------------------------------------------------

    def _concat_prompt(self, question: str, row: Sequence[Passage | None], history: Sequence[tuple[str, str]] = ()) -> str:
        return self.generator.build_prompt(question, [p for p in row if p is not None], history)

    def _single_prompts(self, question: str, row: Sequence[Passage | None], history: Sequence[tuple[str, str]] = ()) -> list[str]:
        return [self.generator.build_prompt(question, [p] if p is not None else [], history) for p in row]

    @staticmethod
    def chat_query(message: str, history: Sequence[tuple[str, str]] = (), turns: int = 2) -> str:
        """The retrieval query of a chat turn: the last user turns carry the topic a follow-up ("and when?") omits."""
        return " ".join([u for u, _ in list(history)[-turns:]] + [message])

    # ---- likelihood (training) -----------------------------------------------------------------------------

    def loglik(self, questions: Sequence[str], answers: Sequence[str], *, hits: Hits | None = None, doc_scores: Any = None,
               mode: str | None = None, batch_size: int | None = None) -> Any:
        """log P(answer | question) under ``mode``, (B,), with autograd when enabled.

        ``doc_scores`` (B, K), when given, replaces ``hits.scores`` in p(z|q), so the loss reaches the query
        encoder. In concat mode p(z|q) does not enter (the passages are all in one prompt).
        """
        from ragtune.rag.marginals import rag_sequence_loglik, rag_token_loglik

        mode = check_mode(mode or self.mode)
        if len(questions) != len(answers):
            raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
        hits = hits if hits is not None else self.retrieve(questions)
        rows = self.passages(hits)
        if mode == "concat":
            lp, mask = self.generator.token_logprobs([self._concat_prompt(q, r) for q, r in zip(questions, rows)], answers,
                                                     batch_size=batch_size)
            return (lp * mask).sum(-1)
        B, K = hits.ids.shape
        doc_logp = self.doc_log_prior(hits, doc_scores, rows)
        prompts = [p for q, r in zip(questions, rows) for p in self._single_prompts(q, r)]
        lp, mask = self.generator.token_logprobs(prompts, [a for a in answers for _ in range(K)], batch_size=batch_size)
        tok_logp = lp.view(B, K, -1)
        mask = mask.view(B, K, -1)[:, 0]
        fn = rag_sequence_loglik if mode == "rag-sequence" else rag_token_loglik
        return fn(doc_logp, tok_logp, mask)

    # ---- answering -----------------------------------------------------------------------------------------

    def ask(self, question: str, **overrides: Any) -> RagOutput:
        """Answer one question; ``overrides`` may set ``mode``, ``k``, ``thorough`` and any decoding option."""
        return self.ask_batch([question], **overrides)[0]

    def ask_batch(self, questions: Sequence[str], *, histories: Sequence[Sequence[tuple[str, str]]] | None = None,
                  sink: Any = None, **overrides: Any) -> list[RagOutput]:
        """Answer many questions in one batch; ``histories`` gives each its chat turns (as ``chat_turn``), ``sink``
        (a ``generation.streaming.TokenSink``) hears each answer as it is decoded (concat mode) and may stop rows."""
        hist = [tuple(h) for h in histories] if histories is not None else [()] * len(questions)
        return self._answer(list(questions), hist, overrides, sink)

    def chat_turn(self, history: Sequence[tuple[str, str]], message: str, **overrides: Any) -> RagOutput:
        """Answer ``message`` given the (user, assistant) turns so far: the history shapes the query and the prompt."""
        return self._answer([message], [tuple(history)], overrides)[0]

    def _split(self, overrides: dict[str, Any]) -> tuple[str, int, bool, dict[str, Any]]:
        gen = {k: v for k, v in overrides.items() if k not in _RAG_OPTIONS and v is not None}
        mode = check_mode(overrides.get("mode") or self.mode)
        k = int(overrides.get("k") or self.k)
        thorough = overrides.get("thorough")
        return mode, k, self.thorough if thorough is None else bool(thorough), gen

    def _answer(self, questions: list[str], histories: list[tuple], overrides: dict[str, Any], sink: Any = None) -> list[RagOutput]:
        from ragtune.rag.decoding import rag_sequence_decode, rag_token_decode

        if not questions:
            return []
        require_questions(questions)
        mode, k, thorough, gen_opts = self._split(overrides)
        t0 = time.perf_counter()
        hits = self.retrieve([self.chat_query(q, h) for q, h in zip(questions, histories)], k)
        rows = self.passages(hits)
        t1 = time.perf_counter()
        doc_logp = self.doc_log_prior(hits, passages=rows).detach()
        single = [self._single_prompts(q, r, h) for q, r, h in zip(questions, rows, histories)]
        seq_logp: list[Any] = [None] * len(questions)
        opts = self.generator.options(gen_opts)
        if mode == "path":  # no generator: the best path's tail entity, posterior from the tails (ragtune.kg.store)
            from ragtune.kg.store import path_answers

            answers, logprobs, posts = path_answers(self.store, rows, doc_logp)
        elif mode == "concat":
            watch = {"sink": sink} if sink is not None else {}
            gens = self.generator.generate([self._concat_prompt(q, r, h) for q, r, h in zip(questions, rows, histories)], **watch, **gen_opts)
            answers, logprobs = [g.text for g in gens], [g.logprob for g in gens]
        elif mode == "rag-sequence":
            n = opts.num_beams if opts.decoding == "beam" else 1
            choices = rag_sequence_decode(self.generator, single, doc_logp, thorough=thorough, num_candidates=n, **gen_opts)
            answers, logprobs = [c.text for c in choices], [c.logprob for c in choices]
            seq_logp = [c.seq_logp for c in choices]
        else:
            if opts.decoding == "sample":
                raise RagtuneError("rag-token decoding is beam search (greedy = 1 beam); use --decoding greedy or beam")
            hyps = rag_token_decode(self.generator, single, doc_logp, num_beams=opts.num_beams if opts.decoding == "beam" else 1,
                                    max_new_tokens=opts.max_new_tokens, length_penalty=opts.length_penalty)
            answers = [self.generator.decode(h.tokens, opts.stop) for h in hyps]
            logprobs = [h.logprob for h in hyps]
        if mode != "path":
            posts = self._posteriors(single, answers, doc_logp, seq_logp)
        t2 = time.perf_counter()
        self.last_timing = {"retrieval": t1 - t0, "generation": t2 - t1}
        prior = doc_logp.exp().cpu()
        return [RagOutput(q, a, float(lp), mode, _citations(r, prior[b], posts[b]))
                for b, (q, a, lp, r) in enumerate(zip(questions, answers, logprobs, rows))]

    def _posteriors(self, single: list[list[str]], answers: list[str], doc_logp: Any, seq_logp: list[Any]) -> Any:
        """p(z|q,y) for each question: score y under each passage alone where decoding did not already."""
        import torch

        from ragtune.rag.marginals import passage_posterior

        B, K = doc_logp.shape
        seq = torch.zeros(B, K)
        # with one usable passage the posterior is 1 on it whatever P(y|q,z) is: skip that forward pass
        single_doc = torch.isfinite(doc_logp).sum(-1).cpu() <= 1
        todo = [b for b in range(B) if seq_logp[b] is None and not single_doc[b]]
        if todo:
            with torch.inference_mode():
                lp, mask = self.generator.token_logprobs([p for b in todo for p in single[b]], [answers[b] for b in todo for _ in range(K)],
                                                         batch_size=16)
            scored = (lp * mask).sum(-1).float().cpu().view(len(todo), K)
            for j, b in enumerate(todo):
                seq[b] = scored[j]
        for b in range(B):
            if seq_logp[b] is not None:
                seq[b] = seq_logp[b]
        return passage_posterior(doc_logp.float().cpu(), seq)

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (), **overrides: Any) -> AnswerStream:
        """Stream the answer's text (token by token in concat mode; other modes decode first, then yield it)."""
        require_questions([question])
        mode, k, _, gen_opts = self._split(overrides)
        if mode != "concat":
            box: dict[str, RagOutput] = {}

            def whole() -> Iterator[str]:
                box["out"] = self._answer([question], [tuple(history)], overrides)[0]
                yield box["out"].answer

            return AnswerStream(whole(), lambda _text: box["out"])
        t0 = time.perf_counter()
        hits = self.retrieve([self.chat_query(question, history)], k)
        rows = self.passages(hits)
        t1 = time.perf_counter()
        prompt = self._concat_prompt(question, rows[0], history)

        def finish(text: str) -> RagOutput:
            import torch

            doc_logp = self.doc_log_prior(hits, passages=rows).detach()
            with torch.inference_mode():
                lp, mask = self.generator.token_logprobs([prompt], [text])
            posts = self._posteriors([self._single_prompts(question, rows[0], history)], [text], doc_logp, [None])
            self.last_timing = {"retrieval": t1 - t0, "generation": time.perf_counter() - t1}
            return RagOutput(question, text, float((lp * mask).sum()), mode, _citations(rows[0], doc_logp.exp().cpu()[0], posts[0]))

        return AnswerStream(self.generator.stream(prompt, **gen_opts), finish)


def _citations(row: Sequence[Passage | None], prior: Any, post: Any) -> list[Citation]:
    return [Citation(p.id, p.doc_id, p.title, p.text, float(prior[z]), float(post[z])) for z, p in enumerate(row) if p is not None]


def apply_trained_retriever(retriever: Any, model_dir: str | Path, *, device: str = "cpu") -> Any:
    """Put a ``ragtune train`` output's retriever parts (query encoder, re-encoded passages) into ``retriever``
    (dense, or a hybrid with a dense part), so search and evaluation use the trained retriever; returns it.
    Without re-encoded passages the index's vectors stay: only queries are encoded at search time."""
    model_dir = Path(model_dir)
    if not (model_dir / META_FILE).exists():
        raise RagtuneError(f"{model_dir} is not a trained RAG model (no {META_FILE}); pass the output directory of `ragtune train`")
    parts = [name for name in ("query_encoder", "dense_index") if (model_dir / name).is_dir()]
    dense = _dense_part(retriever)
    if parts and dense is None:
        kind = getattr(retriever, "kind", type(retriever).__name__)
        raise RagtuneError(f"{model_dir} has a trained retriever ({', '.join(parts)}) but retriever {kind!r} is not dense; "
                           "use --retriever dense or hybrid")
    if "query_encoder" in parts:
        from ragtune.retrieval.dense import Encoder

        dense.encoder = Encoder.load(model_dir / "query_encoder", device=device)
    if "dense_index" in parts:
        from ragtune.retrieval.dense.vector_index import VectorIndex

        dense.index = VectorIndex.load(model_dir / "dense_index")
    return retriever


def _dense_part(retriever: Any) -> Any | None:
    """The dense retriever in ``retriever``: itself, or the first dense member of a hybrid."""
    if hasattr(retriever, "encoder"):
        return retriever
    return next((d for d in map(_dense_part, getattr(retriever, "retrievers", [])) if d is not None), None)
