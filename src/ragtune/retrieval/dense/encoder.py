"""A bi-encoder over any transformers encoder: token states -> pooled -> (optionally) unit vectors.

The model loads on first use, so building an ``Encoder`` (or a retriever holding one) costs nothing until
text is encoded. ``encode_*`` are inference paths (numpy out, no autograd); ``embed`` is the training path
(a torch tensor with autograd).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

from ragtune.atomic import write_json
from ragtune.models.batching import input_order, length_buckets
from ragtune.models.lazy import LazyModel
from ragtune.retrieval.dense.pooling import l2_normalize, pool, pooling_from_model_dir

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ragtune.config import DenseConfig

log = logging.getLogger(__name__)

ENCODER_JSON = "encoder.json"
Kind = Literal["query", "passage"]


def _model_path(name: str) -> str:
    from ragtune.models.registry import resolve

    return resolve(name)


class Encoder(LazyModel):
    """Encode queries and passages into vectors whose inner product scores relevance."""

    def __init__(
        self,
        model: str = "minilm",
        *,
        pooling: Literal["mean", "cls", "last"] | None = None,
        normalize: bool = True,
        max_length: int = 256,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        # A local path is recorded absolute so that a saved index still finds it from another working directory.
        self.model_name = str(Path(model).expanduser().resolve()) if Path(model).expanduser().exists() else model
        self._pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_config(cls, cfg: "DenseConfig") -> "Encoder":
        return cls(
            cfg.encoder,
            pooling=cfg.pooling,
            normalize=cfg.normalize,
            max_length=cfg.max_length,
            query_prefix=cfg.query_prefix,
            passage_prefix=cfg.passage_prefix,
            batch_size=cfg.batch_size,
            device=cfg.device,
        )

    # -- lazy loading -------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """What ``from_pretrained`` is given: the resolved packaged model, a local path or a hub id."""
        return _model_path(self.model_name)

    @property
    def pooling(self) -> str:
        if self._pooling is None:
            # The model's own sentence-transformers config wins; a plain transformers checkpoint gets mean pooling,
            # the common default for sentence embedders.
            self._pooling = pooling_from_model_dir(self.path) or "mean"
        return self._pooling

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = self.path
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        if self._tokenizer.pad_token_id is None:  # decoder-style tokenizers: padding is masked out anyway
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        model = AutoModel.from_pretrained(path)
        model.eval()  # dropout off; a trainer switches to train() itself
        self._model = model.to(self.device)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: str) -> "Encoder":
        self.device = device
        if self._model is not None:
            self._model = self._model.to(device)
        return self

    @property
    def effective_max_length(self) -> int:
        # Never exceed the position table: a longer sequence would crash the model, not just be slow.
        limit = getattr(self.model.config, "max_position_embeddings", None) or self.max_length
        return min(self.max_length, int(limit))

    # -- encoding -----------------------------------------------------------------------------------------

    def prefix(self, kind: Kind) -> str:
        if kind == "query":
            return self.query_prefix
        if kind == "passage":
            return self.passage_prefix
        raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")

    def _pool(self, hidden: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
        v = pool(self.pooling, hidden, mask)
        return l2_normalize(v) if self.normalize else v

    def encode_queries(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """(n, d) float32 query vectors."""
        return self.encode(texts, kind="query", batch_size=batch_size, progress=progress)

    def encode_passages(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """(n, d) float32 passage vectors."""
        return self.encode(texts, kind="passage", batch_size=batch_size, progress=progress)

    def encode(self, texts: Sequence[str], *, kind: Kind, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        texts = [self.prefix(kind) + t for t in texts]
        bs = batch_size or self.batch_size
        model = self.model
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Tokenise everything in one call to the Rust tokenizer (parallel, no per-batch Python setup), then
        # batch by token length so padding, the one cost we control, is minimal.
        ids = self._tokenize(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        with torch.inference_mode(), tqdm(total=len(texts), disable=not progress, desc=f"encode {kind}s", unit="text") as bar:
            for start in range(0, len(texts), bs):
                rows = order[start : start + bs]
                t_ids, t_mask = self._padded([ids[i] for i in rows])
                hidden = model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
                out[rows] = self._pool(hidden, t_mask).float().cpu().numpy()
                bar.update(len(rows))
        return out

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.effective_max_length,
                              return_attention_mask=False, return_token_type_ids=False)["input_ids"]

    def _padded(self, seqs: Sequence[Sequence[int]]) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(ids, attention mask) of token sequences padded to the longest, on the tokenizer's padding side."""
        import torch

        tok = self.tokenizer
        pad_id, left = int(tok.pad_token_id), tok.padding_side == "left"
        width = max(len(s) for s in seqs)
        input_ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, seq in enumerate(seqs):
            cols = slice(width - len(seq), width) if left else slice(0, len(seq))
            input_ids[r, cols] = seq
            mask[r, cols] = 1
        device = torch.device(self.device)
        return torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device)

    def embed(self, texts: Sequence[str], *, kind: Kind) -> "torch.Tensor":
        """(n, d) vectors with autograd, for training (the model's train/eval mode is the caller's).

        Rows run in groups of similar length (``models.batching.length_buckets``): a training batch mixes
        questions of ~15 tokens with passages of ~250, and one padded forward would spend most of its compute
        on padding."""
        import torch

        if not texts:
            return torch.empty(0, self.dim, device=self.device)
        ids = self._tokenize([self.prefix(kind) + t for t in texts])
        groups = length_buckets([len(x) for x in ids], max_rows=len(ids))
        parts = []
        for rows in groups:
            t_ids, t_mask = self._padded([ids[i] for i in rows])
            parts.append(self._pool(self.model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state, t_mask))
        out = torch.cat(parts)
        return out[torch.tensor(input_order(groups), device=out.device)]

    # -- persistence --------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Everything besides weights that changes the vectors; recorded next to an index."""
        return {
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "batch_size": self.batch_size,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, **self.settings()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, device: str = "cpu") -> "Encoder":
        data = dict(data)
        return cls(data.pop("model"), **data, device=device)

    def save(self, path: str | Path) -> None:
        """Weights, tokenizer and ``encoder.json``; ``Encoder.load(path)`` gives the same vectors."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        meta = {"source_model": self.model_name, **self.settings()}
        write_json(path / ENCODER_JSON, meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "Encoder":
        path = Path(path)
        meta_file = path / ENCODER_JSON
        settings = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        settings.pop("source_model", None)
        return cls(str(path), **settings, device=device)

    def __repr__(self) -> str:
        return f"Encoder({self.model_name!r}, pooling={self._pooling!r}, normalize={self.normalize}, max_length={self.max_length})"
