"""``RAG``: a retriever, a passage store and a generator wired into the three answer models.

For question q with top-k hits scored f(q, z), p(z|q) = softmax(f / doc_temperature) over the k hits, and

* ``concat``: one prompt with all k passages, one generation (the common "stuff the context" RAG);
* ``rag-sequence``: P(y|q) = sum_z p(z|q) P(y|q,z);
* ``rag-token``: P(y_t|q,y_<t) = sum_z p(z|q) P(y_t|q,z,y_<t).

Every answer carries citations with prior p(z|q) and posterior p(z|q,y) ∝ p(z|q) P(y|q,z); in concat mode the
answer is scored under each passage alone to get P(y|q,z).

A trained model directory (``RAG.from_pretrained`` / ``RAG.save_pretrained``) is ``rag.trained``'s.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ragtune.config import RAG_MODES
from ragtune.corpus.types import Passage
from ragtune.errors import RagtuneError
from ragtune.generation.generator import Generator
from ragtune.rag.history import retrieval_info, without_weak_knowledge
from ragtune.rag.output import AnswerStream, RagOutput, citations
from ragtune.retrieval.base import EMPTY_ID, Hits

MODES = RAG_MODES  # path: knowledge-graph answer, no generator (ragtune.kg)
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
        mode: str | None = None,
        k: int | None = None,
        doc_temperature: float | None = None,
        thorough: bool = True,
        chat: Any = None,
    ) -> None:
        from ragtune.config import ChatConfig, RagConfig

        defaults = RagConfig()  # the one place mode, k and doc_temperature default
        self.retriever = retriever
        self.generator = generator
        self.store = store
        self.mode = check_mode(mode or defaults.mode)
        self.k = k or defaults.k
        self.doc_temperature = defaults.doc_temperature if doc_temperature is None else doc_temperature
        self.thorough = thorough
        self.chat = chat or ChatConfig()  # how chat turns are retrieved for and prompted (rag.history)
        self.retriever_kind = getattr(retriever, "kind", None)

    # ---- construction --------------------------------------------------------------------------------------

    @classmethod
    def from_index(
        cls,
        index_dir: str | Path,
        *,
        retriever: str | None = None,
        model: str | None = None,
        mode: str | None = None,
        k: int | None = None,
        config: Any = None,
        device: str = "cpu",
        generator: Generator | None = None,
        backend: str | None = None,
    ) -> "RAG":
        """A RAG over a ``ragtune index`` directory; ``config`` (a ``ragtune.config.Config``) defaults to the
        index's own; explicit arguments win over it (``retriever`` defaults to ``[rag] retriever``)."""
        from ragtune.retrieval.index import Index

        index = Index.open(index_dir)
        cfg = config or index.config
        gen = generator or Generator.from_config(cfg.generator, model=model, device=device, backend=backend)
        kind = retriever or cfg.rag.retriever
        if kind == "bm25" and getattr(index, "has_graph", False):
            kind = "kg"  # an index with triples: its paths (fused with its documents, if any) are the evidence
        from ragtune.retrieval.rerank import maybe_rerank

        rerank_cfg = cfg.rerank.model_copy(update={"device": device})
        rag = cls(maybe_rerank(index.retriever(kind, device=device, config=cfg), rerank_cfg, index.store), gen, index.store,
                  mode=mode or cfg.rag.mode, k=k or cfg.rag.k, doc_temperature=cfg.rag.doc_temperature, chat=cfg.chat)
        rag.index = index
        rag.retriever_kind = kind
        return rag

    @classmethod
    def open(cls, index_dir: str | Path, *, model: str | Path | None = None, mode: str | None = None, k: int | None = None,
             retriever: str | None = None, config: Any = None, device: str = "cpu", backend: str | None = None) -> "RAG":
        """A RAG over ``index_dir`` whose ``model`` is either a trained directory (its generator and retriever
        parts, as ``from_pretrained``) or a generator (packaged name, path or hub id, as ``from_index``)."""
        from ragtune.rag.trained import is_trained_dir

        if mode is not None:
            check_mode(mode)
        if is_trained_dir(model):
            return cls.from_pretrained(model, index_dir=index_dir, device=device, mode=mode, k=k, retriever=retriever,
                                       backend=backend, config=config)
        return cls.from_index(index_dir, retriever=retriever, model=None if model is None else str(model), mode=mode, k=k,
                              config=config, device=device, backend=backend)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, index_dir: str | Path | None = None, device: str = "cpu",
                        mode: str | None = None, k: int | None = None, retriever: str | None = None,
                        backend: str | None = None, config: Any = None) -> "RAG":
        """Load a trained directory (layout in ``rag.trained``); arguments win over what it recorded (``config``, as
        for ``from_index``, defaults to the index's own)."""
        from ragtune.rag.trained import GENERATOR_DIR, apply_trained_retriever, index_of, read_meta

        meta = read_meta(model_dir)
        rag_cfg = meta.get("rag", {})
        generator = Generator.load(Path(model_dir) / GENERATOR_DIR, device=device, backend=backend)
        rag = cls.from_index(index_dir if index_dir is not None else index_of(model_dir, meta),
                             retriever=retriever or rag_cfg.get("retriever"), mode=mode or rag_cfg.get("mode"),
                             k=k or rag_cfg.get("k"), device=device, generator=generator, config=config)
        if "doc_temperature" in rag_cfg:
            rag.doc_temperature = float(rag_cfg["doc_temperature"])
        apply_trained_retriever(rag.retriever, model_dir, device=device)
        return rag

    def save_pretrained(self, model_dir: str | Path, **kw: Any) -> Path:
        """Write the layout ``from_pretrained`` reads (the index itself is referenced, not copied); keyword
        arguments as ``rag.trained.save_trained``."""
        from ragtune.rag.trained import save_trained

        return save_trained(self, model_dir, **kw)

    # ---- retrieval -----------------------------------------------------------------------------------------

    def retrieve(self, questions: Sequence[str], k: int | None = None) -> Hits:
        return self.retriever.search(list(questions), k or self.k)

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

    def _concat_prompt(self, question: str, row: Sequence[Passage | None], history: Sequence[tuple[str, str]] = (),
                       template: str | None = None) -> str:
        return self.generator.build_prompt(question, [p for p in row if p is not None], self._shown(history), template)

    def _single_prompts(self, question: str, row: Sequence[Passage | None], history: Sequence[tuple[str, str]] = (),
                        template: str | None = None) -> list[str]:
        history = self._shown(history)
        return [self.generator.build_prompt(question, [p] if p is not None else [], history, template) for p in row]

    def _shown(self, history: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
        """The exchanges a prompt shows: the last ``[chat] prompt_exchanges`` (retrieval still reads its own lookback)."""
        n = self.chat.prompt_exchanges
        return history if n is None else tuple(history)[-n:] if n else ()

    def reply_template(self, dialogue: bool) -> str | None:
        """The prompt of a chat reply (``[chat] template``, else the dialogue default); None: the generator's own."""
        from ragtune.generation.prompts import DIALOGUE_TEMPLATE

        return (self.chat.template or DIALOGUE_TEMPLATE) if dialogue else None

    # ---- conversations -------------------------------------------------------------------------------------

    def turn_queries(self, messages: Sequence[str], histories: Sequence[Sequence[tuple[str, str]]]) -> list[str]:
        """The retrieval query of each chat turn under ``[chat] query`` (``rag.history.conversation_query``)."""
        from ragtune.rag.history import conversation_query

        index = getattr(self, "index", None)
        graph = index.graph if index is not None and getattr(index, "has_graph", False) else None
        linker = None
        if graph is not None:
            from ragtune.kg.linking import linker_for

            linker = linker_for(graph)
        rewrites = self.rewrite(messages, histories) if self.chat.query == "rewrite" else [None] * len(messages)
        return [conversation_query(m, tuple(h), self.chat, graph, linker, r) for m, h, r in zip(messages, histories, rewrites)]

    def queries(self, questions: Sequence[str], histories: Sequence[Sequence[tuple[str, str]] | None]) -> list[str]:
        """Each row's retrieval query: the question itself, or for a chat turn (a history that is not None, even
        an empty one) the one ``turn_queries`` builds."""
        out: list[str] = list(questions)
        turns = [b for b, h in enumerate(histories) if h is not None]
        if turns:
            for b, q in zip(turns, self.turn_queries([questions[b] for b in turns], [histories[b] for b in turns])):
                out[b] = q
        return out

    def rewrite(self, messages: Sequence[str], histories: Sequence[Sequence[tuple[str, str]]]) -> list[str | None]:
        """The generator's standalone version of each message that has a history (greedy, one line; None without
        history, where the message already stands alone)."""
        from ragtune.generation.prompts import REWRITE_TEMPLATE

        todo = [i for i, h in enumerate(histories) if h]
        out: list[str | None] = [None] * len(messages)
        if todo:
            prompts = [self.generator.build_prompt(messages[i], (), histories[i], REWRITE_TEMPLATE) for i in todo]
            for i, g in zip(todo, self.generator.generate(prompts, decoding="greedy", max_new_tokens=48,
                                                           min_new_tokens=0)):
                line = g.text.strip().split("\n")[0].strip()
                out[i] = line or None
        return out

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
        rows = hits.passages(self.store)
        if mode == "concat":
            lp, mask = self.generator.token_logprobs([self._concat_prompt(q, r) for q, r in zip(questions, rows)], answers,
                                                     batch_size=batch_size)
            return (lp * mask).sum(-1)
        doc_logp = self.doc_log_prior(hits, doc_scores, rows)
        tok_logp, mask = self.passage_logprobs(questions, answers, rows, batch_size=batch_size)
        fn = rag_sequence_loglik if mode == "rag-sequence" else rag_token_loglik
        return fn(doc_logp, tok_logp, mask)

    def passage_logprobs(self, questions: Sequence[str], answers: Sequence[str], rows: list[list[Passage | None]], *,
                         vocab_mean: bool = False, batch_size: int | None = None, max_tokens: int | None = None,
                         histories: Sequence[Sequence[tuple[str, str]]] | None = None) -> tuple[Any, ...]:
        """Each answer scored under each of its question's passages alone: ``tok_logp`` (B, K, T) log
        P(y_t | q, z, y_<t) and ``mask`` (B, T), plus ``mean_logp`` (B, K, T) (the vocabulary mean, for label
        smoothing) with ``vocab_mean``. With ``doc_log_prior`` these are the terms of both RAG marginals.
        ``histories`` (chat turns, one per question) make the prompts chat replies, as ``chat_turn`` builds them.
        ``batch_size`` and ``max_tokens`` bound the rows and padded tokens of one forward pass."""
        B, K = len(rows), len(rows[0]) if rows else 0
        hist = histories if histories is not None else [()] * B
        template = self.reply_template(histories is not None)
        prompts = [p for q, r, h in zip(questions, rows, hist) for p in self._single_prompts(q, r, h, template)]
        scored = self.generator.token_logprobs(prompts, [a for a in answers for _ in range(K)], batch_size=batch_size,
                                               vocab_mean=vocab_mean, max_tokens=max_tokens)
        tok_logp, mask = scored[0].float().view(B, K, -1), scored[1].view(B, K, -1)[:, 0]
        return (tok_logp, mask, scored[2].float().view(B, K, -1)) if vocab_mean else (tok_logp, mask)

    # ---- answering -----------------------------------------------------------------------------------------

    def ask(self, question: str, **overrides: Any) -> RagOutput:
        """Answer one question; ``overrides`` may set ``mode``, ``k``, ``thorough`` and any decoding option."""
        return self.ask_batch([question], **overrides)[0]

    def ask_batch(self, questions: Sequence[str], *, histories: Sequence[Sequence[tuple[str, str]]] | None = None,
                  sink: Any = None, **overrides: Any) -> list[RagOutput]:
        """Answer many questions in one batch; ``histories`` gives each its chat turns (as ``chat_turn``), ``sink``
        (a ``generation.streaming.TokenSink``) hears each answer as it is decoded (concat mode) and may stop rows."""
        hist = [tuple(h) for h in histories] if histories is not None else [()] * len(questions)
        return self._answer(list(questions), hist, overrides, sink, dialogue=[bool(h) for h in hist])

    def chat_turn(self, history: Sequence[tuple[str, str]], message: str, **overrides: Any) -> RagOutput:
        """Reply to ``message`` given the (user, assistant) turns so far: the history shapes the query
        (``[chat] query``) and the prompt (``[chat] template``)."""
        return self.chat_batch([message], [history], **overrides)[0]

    def chat_batch(self, messages: Sequence[str], histories: Sequence[Sequence[tuple[str, str]]], *,
                   queries: Sequence[str] | None = None, **overrides: Any) -> list[RagOutput]:
        """``chat_turn`` for many conversations in one batch (a first turn, with no history, is a chat turn too);
        ``queries``, when given, are the turns' ``turn_queries`` already built (a rewrite is not made twice)."""
        if len(messages) != len(histories):
            raise ValueError(f"{len(messages)} messages but {len(histories)} histories")
        return self._answer(list(messages), [tuple(h) for h in histories], overrides, dialogue=[True] * len(messages),
                            queries=queries)

    def retrieve_turns(self, messages: Sequence[str], histories: Sequence[Sequence[tuple[str, str]]], k: int | None = None, *,
                       queries: Sequence[str] | None = None) -> Hits:
        """The passages chat turns are answered from (``turn_queries``, or ``queries`` already built, then the
        ``[chat] min_knowledge`` cut)."""
        hits = self.retrieve(list(queries) if queries is not None else self.turn_queries(messages, histories), k)
        return hits if self.chat.min_knowledge is None else without_weak_knowledge(hits, self.chat.min_knowledge)

    def _split(self, overrides: dict[str, Any]) -> tuple[str, int, bool, dict[str, Any]]:
        gen = {k: v for k, v in overrides.items() if k not in _RAG_OPTIONS and v is not None}
        mode = check_mode(overrides.get("mode") or self.mode)
        k = int(overrides.get("k") or self.k)
        thorough = overrides.get("thorough")
        return mode, k, self.thorough if thorough is None else bool(thorough), gen

    def _answer(self, questions: list[str], histories: list[tuple], overrides: dict[str, Any], sink: Any = None,
                dialogue: Sequence[bool] | None = None, queries: Sequence[str] | None = None) -> list[RagOutput]:
        """``dialogue[b]``: row b is a chat turn (its query from ``turn_queries``, its prompt a reply's), else a
        question (``ask_batch`` makes a row with a history a chat turn); ``queries``: the rows' queries, built."""
        from ragtune.rag.decoding import rag_sequence_decode, rag_token_decode

        if not questions:
            return []
        require_questions(questions)
        mode, k, thorough, gen_opts = self._split(overrides)
        t0 = time.perf_counter()
        chat = list(dialogue) if dialogue is not None else [False] * len(questions)
        if any(chat) and "stop" not in gen_opts:  # a chat reply stops before it writes the user's next turn
            from ragtune.generation.prompts import DIALOGUE_STOP

            gen_opts = gen_opts | {"stop": [*self.generator.defaults.stop, DIALOGUE_STOP]}
        if queries is None:
            queries = self.queries(questions, [h if c else None for h, c in zip(histories, chat)])
        hits = self.retrieve(queries, k)
        if any(chat) and self.chat.min_knowledge is not None:
            hits = without_weak_knowledge(hits, self.chat.min_knowledge, rows=np.array(chat))
        rows = hits.passages(self.store)
        t1 = time.perf_counter()
        doc_logp = self.doc_log_prior(hits, passages=rows).detach()
        templates = [self.reply_template(c) for c in chat]
        single = [self._single_prompts(q, r, h, t) for q, r, h, t in zip(questions, rows, histories, templates)]
        seq_logp: list[Any] = [None] * len(questions)
        opts = self.generator.options(gen_opts)
        if mode == "path":  # no generator: the best path's tail entity, posterior from the tails (ragtune.kg.store)
            from ragtune.kg.store import path_answers

            answers, logprobs, posts = path_answers(self.store, rows, doc_logp)
        elif mode == "concat":
            watch = {"sink": sink} if sink is not None else {}
            concat = [self._concat_prompt(q, r, h, t) for q, r, h, t in zip(questions, rows, histories, templates)]
            gens = self.generator.generate(concat, **watch, **gen_opts)
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
                                    max_new_tokens=opts.max_new_tokens, length_penalty=opts.length_penalty,
                                    min_new_tokens=opts.min_new_tokens)
            answers = [self.generator.decode(h.tokens, opts.stop) for h in hyps]
            logprobs = [h.logprob for h in hyps]
        if mode != "path":
            posts = self._posteriors(single, answers, doc_logp, seq_logp)
        t2 = time.perf_counter()
        timing = {"retrieval": (t1 - t0) / len(questions), "generation": (t2 - t1) / len(questions)}  # each one's share
        # the prompt tokens each answer's generator read: its one prompt (concat), or one per passage
        read = [[] for _ in questions] if mode == "path" else [[p] for p in concat] if mode == "concat" else single
        usage = [{"prompt_tokens": sum(len(ids) for ids in self.generator.encode_prompts(ps)) if ps else 0} for ps in read]
        prior = doc_logp.exp().cpu()
        return [RagOutput(q, a, float(lp), mode, citations(r, prior[b], posts[b]), dict(timing), retrieval_info(qr) if c else None,
                          usage[b]) for b, (q, a, lp, r, qr, c) in enumerate(zip(questions, answers, logprobs, rows, queries, chat))]

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

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (), *, dialogue: bool | None = None,
               **overrides: Any) -> AnswerStream:
        """``ask`` (or, with ``dialogue``, ``chat_turn``; the default: whenever there is a history) with the answer's
        text streamed as it is decoded (concat mode with greedy or sampling decoding; otherwise the whole answer
        once it is decoded)."""
        from ragtune.generation.streaming import Streamed

        require_questions([question])
        self._split(overrides)  # a bad mode or option fails here, not in the decoding thread
        chat = bool(history) if dialogue is None else dialogue
        return AnswerStream(Streamed(lambda sink: self._answer([question], [tuple(history)], overrides, sink, dialogue=[chat])[0]))
