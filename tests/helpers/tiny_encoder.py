"""A tiny random-init BERT (encoder or cross-encoder) saved with its own tokenizer, built in a test's tmp dir.

Random weights still give deterministic, text-dependent vectors, which is all plumbing tests need; tests that
need meaning either train the model for a few steps or use the packaged MiniLM (marked slow).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tests.helpers.tokenizer import wordpiece_tokenizer

DEFAULT_TEXTS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The mitochondrion is the powerhouse of the cell.",
    "Python is a programming language that emphasises readability.",
    "Mount Everest is the highest mountain above sea level.",
    "The Great Wall of China was built over many centuries.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Shakespeare wrote Hamlet, Macbeth and many sonnets.",
    "Where is the Eiffel Tower? What do plants do with light? Who wrote Hamlet? How high is Everest?",
]


def _config(vocab_size: int, hidden: int, layers: int, **extra: object):  # -> BertConfig
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=128, **extra,
    )


def tiny_encoder_dir(
    out_dir: Path, texts: Sequence[str] = DEFAULT_TEXTS, *, hidden: int = 32, layers: int = 2, seed: int = 0, vocab_size: int = 500
) -> Path:
    """A ``BertModel`` + tokenizer directory that ``Encoder(str(out_dir))`` loads."""
    import torch
    from transformers import BertModel

    out_dir = Path(out_dir)
    tok = wordpiece_tokenizer(texts, out_dir, vocab_size=vocab_size)
    torch.manual_seed(seed)
    BertModel(_config(len(tok), hidden, layers)).save_pretrained(out_dir)
    return out_dir


def tiny_cross_encoder_dir(
    out_dir: Path, texts: Sequence[str] = DEFAULT_TEXTS, *, hidden: int = 32, layers: int = 2, seed: int = 0, vocab_size: int = 500
) -> Path:
    """An untrained one-logit ``BertForSequenceClassification`` + tokenizer directory (a cross-encoder shape)."""
    import torch
    from transformers import BertForSequenceClassification

    out_dir = Path(out_dir)
    tok = wordpiece_tokenizer(texts, out_dir, vocab_size=vocab_size)
    torch.manual_seed(seed)
    BertForSequenceClassification(_config(len(tok), hidden, layers, num_labels=1)).save_pretrained(out_dir)
    return out_dir
