"""One configuration model shared by the CLI, the Python API and ``ragtune.toml`` files.

Each package reads only its own section. Unknown keys are errors, so a typo in a file is caught, not ignored.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def with_values(self, **fields):
        """A validated copy with some fields replaced, e.g. ``chat.with_values(query="last-turn")``; None values
        are ignored (an option the user did not give)."""
        return type(self).model_validate(self.model_dump() | {k: v for k, v in fields.items() if v is not None})


class AnalyzerConfig(Section):
    normalize: Literal["NFKC", "NFC", "none"] = "NFKC"
    lowercase: bool = True
    stopwords: str | list[str] | None = "en"  # a bundled list name, an explicit list, or None
    stemmer: str | None = "english"  # a Snowball language for PyStemmer, or None
    cjk_bigrams: bool = True


class CorpusConfig(Section):
    chunk_words: int = Field(100, ge=0, description="passage window in words (CJK: characters / 1.5); 0 = whole documents")
    chunk_overlap: int = Field(20, ge=0)
    id_field: str = "id"
    title_field: str = "title"
    text_field: str = "text"


class IndexConfig(Section):
    wait: bool = True  # when another process is updating the same index: wait for it (True) or fail at once


class SparseConfig(Section):
    variant: Literal["lucene", "robertson", "bm25+", "bm25l", "atire"] = "lucene"
    k1: float = 1.2
    b: float = 0.75
    delta: float = 0.5
    tfidf_sublinear: bool = True


class DenseConfig(Section):
    encoder: str = "minilm"
    pooling: Literal["mean", "cls", "last"] | None = None  # None: what the model's own config says, else mean
    normalize: bool = True
    max_length: int = 256
    query_prefix: str = ""
    passage_prefix: str = ""
    batch_size: int = 64
    index: str = "flat"  # "flat", "hnsw", "ivfpq", or a FAISS factory string
    device: str = "cpu"


class HybridConfig(Section):
    retrievers: list[str] = ["bm25", "dense"]
    method: Literal["rrf", "weighted"] = "rrf"
    rrf_k: int = 60
    weights: list[float] | None = None
    depth: int = 100  # how many hits of each retriever are fused (rescore: how many candidates the first proposes)
    # retriever kind "rescore": the first retriever's top `depth` re-ranked by E(q).d + sparse_weight * s_first
    # (the second retriever dense; its query encoder trains through this score). 0.1: BM25 + MiniLM cosine on SQuAD
    # and SciFact training questions (benchmarks/bench_rescore_weight.py, results/rescore_weight.json).
    sparse_weight: float = 0.1


class RerankConfig(Section):
    model: str | None = None
    top_n: int = 50
    batch_size: int = 32
    device: str = "cpu"


class GeneratorConfig(Section):
    model: str = "smollm2-135m-instruct"
    max_new_tokens: int = 64
    min_new_tokens: int = Field(0, ge=0)  # eos cannot end an answer before this many tokens (a stop string still can)
    decoding: Literal["greedy", "beam", "sample"] = "greedy"
    num_beams: int = 4
    temperature: float = 0.7
    top_p: float = 0.9
    stop: list[str] = []
    prompt_template: str | None = None  # None: the generation package's default
    device: str = "cpu"
    # auto: bfloat16 where the device computes it natively (a CPU with AVX512-BF16 or AMX, most GPUs), else float32;
    # the default stays float32 so that answers and scores are reproducible across machines
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    backend: Literal["torch", "ctranslate2"] = "torch"  # ctranslate2: fast inference (ragtune[fast]); training is torch
    compute_type: str = "auto"  # ctranslate2: auto = int8 on CPU, float16 on CUDA; or float32, int8_float16, ...


# The one list of RAG modes (rag.model, the CLI and the server use it); path: a knowledge-graph answer, no generator.
RagMode = Literal["concat", "rag-sequence", "rag-token", "path"]
RAG_MODES: tuple[str, ...] = get_args(RagMode)


class RagConfig(Section):
    mode: RagMode = "concat"
    k: int = 5
    retriever: str = "bm25"
    doc_temperature: float = 1.0  # p(z|q) = softmax(f(q,z) / doc_temperature)


class ChatConfig(Section):
    """Conversations (`ragtune chat`, the server's chat route, `eval dialogue`): a turn's retrieval query and reply
    prompt (``rag.history``)."""

    query: Literal["history", "last-turn", "joined", "rewrite"] = "history"
    lookback: int = Field(8, ge=0)  # earlier utterances read for the entities in play
    # earlier (user, assistant) exchanges the reply prompt shows, the most recent ones (None: all); the prompt's cost
    # grows with the conversation (docs/dialogue.md)
    prompt_exchanges: int | None = Field(None, ge=0)
    decay: float = Field(0.9, gt=0, le=1)  # an entity's weight shrinks by this factor per utterance back
    object_weight: float = Field(0.1, ge=0, le=1)  # entities the KB states no facts about (values) weigh this much
    max_entities: int = Field(3, ge=1)  # topics a path search starts from
    max_hops: int | None = Field(1, ge=1)  # steps a chat turn's path search takes from them (None: the index's)
    # the best passage's retrieval score f(q, z) below this: the reply is made without knowledge (None: always use it)
    min_knowledge: float | None = None
    template: str | None = None  # the reply prompt ({passages}, {history}, {question}); None: generation's default


class ServerConfig(Section):
    """`ragtune serve`: request batching, limits and bounds (each default stated here once)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch_size: int = Field(8, ge=1)  # answer requests decoded together in one micro-batch
    max_wait_ms: float = Field(10.0, ge=0)  # how long the first request of a batch waits for company
    queue_size: int = Field(64, ge=1)  # answer requests waiting or running; more get 429
    timeout_s: float = Field(120.0, gt=0)  # per answer request, queueing included
    max_body_bytes: int = Field(1_000_000, ge=1024)  # larger request bodies get 413
    max_k: int = Field(100, ge=1)
    max_tokens: int = Field(1024, ge=1)  # bound on max_tokens / max_new_tokens of one request
    max_question_chars: int = Field(8000, ge=1)
    max_messages: int = Field(100, ge=1)  # chat turns in one request
    preload: bool = False  # load the models at start (/ready is 503 until they are loaded)
    # searches must not queue behind a generation for CPU: the generation thread runs this much nicer (Linux, per
    # thread), and the interpreter hands the GIL over every switch_interval_ms (Python's default is 5 ms)
    worker_nice: int = Field(10, ge=0, le=19)
    switch_interval_ms: float = Field(0.5, gt=0)


class TrainingConfig(Section):
    # rag: -log P(y|q) through generator and retriever; contrastive (DPR: in-batch and BM25 hard negatives)
    # and lm-supervised (KL to the generator's preference over the top k) train the retriever alone.
    objective: Literal["rag", "contrastive", "lm-supervised"] = "rag"
    mode: Literal["rag-sequence", "rag-token"] = "rag-sequence"
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    encoder_lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    train_generator: bool = True
    train_query_encoder: bool = True
    train_doc_encoder: bool = False
    reindex_every: int = 500
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    length_normalize: bool = False  # divide each answer's NLL by its token count
    hard_negatives: int = Field(1, ge=0)  # contrastive: BM25 negatives per question (the index needs bm25)
    contrastive_temperature: float = Field(0.05, gt=0)  # contrastive: softmax over f(q, z) / this
    lm_temperature: float = Field(1.0, gt=0)  # lm-supervised: target softmax(log P(y|q,z) / this)
    eval_every: int = 200
    save_every: int = 200
    early_stopping_patience: int | None = None
    seed: int = 0
    # auto: bf16 autocast where the device computes bf16 natively (CPU: AVX512-BF16 or AMX), else fp32;
    # weights, gradients and optimiser state stay float32 (training/precision.py)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # recompute activations in backward: auto = the generator when it trains, the encoder when passages are
    # re-embedded with gradient (train_doc_encoder); long sequences are where the memory goes (training/memory.py)
    gradient_checkpointing: Literal["auto"] | bool = "auto"
    # padded tokens of one generator forward pass (a longer prompt gets a pass of its own): a pass's temporary
    # memory grows with its size, the work per token does not (models/batching.py); a large value turns it off
    max_pass_tokens: int | None = Field(1024, ge=1)
    device: str = "cpu"


class Config(Section):
    analyzer: AnalyzerConfig = AnalyzerConfig()
    corpus: CorpusConfig = CorpusConfig()
    index: IndexConfig = IndexConfig()
    sparse: SparseConfig = SparseConfig()
    dense: DenseConfig = DenseConfig()
    hybrid: HybridConfig = HybridConfig()
    rerank: RerankConfig = RerankConfig()
    generator: GeneratorConfig = GeneratorConfig()
    rag: RagConfig = RagConfig()
    chat: ChatConfig = ChatConfig()
    training: TrainingConfig = TrainingConfig()
    server: ServerConfig = ServerConfig()

    @classmethod
    def load(cls, path: str | Path | None) -> "Config":
        """A config from a ``ragtune.toml`` file; defaults when ``path`` is None."""
        if path is None:
            return cls()
        from ragtune.errors import RagtuneError

        path = Path(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise RagtuneError(f"config file {path} does not exist") from None
        except IsADirectoryError:
            raise RagtuneError(f"config file {path} is a folder: give a ragtune.toml file") from None
        except OSError as e:
            raise RagtuneError(f"config file {path} is unreadable: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise RagtuneError(f"config file {path} is not UTF-8 text (invalid byte at offset {e.start})") from None
        except tomllib.TOMLDecodeError as e:
            raise RagtuneError(f"config file {path} is not valid TOML: {e}") from None
        return cls.model_validate(data)

    def updated(self, **sections: dict) -> "Config":
        """A copy with some fields of some sections replaced, e.g. ``updated(rag={"k": 3})``; None values are ignored."""
        # validated as a whole, so an error names its section: "training.objective"
        data = self.model_dump()
        for name, fields in sections.items():
            data[name].update({k: v for k, v in fields.items() if v is not None})
        return type(self).model_validate(data)
