"""Tiny random-init language models saved to a directory, so generation, RAG and training tests run in seconds.

Each builder trains a byte-level BPE tokenizer on the given texts, builds a model of a few thousand parameters
from a config (no hub), saves both with ``save_pretrained`` and returns the directory: anything that accepts a
model path (``Generator(model=str(path))``) can load it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

import torch

from tests.helpers.tokenizer import bpe_tokenizer

DEFAULT_TEXTS = [
    "The Eiffel Tower is in Paris. It was completed in 1889.",
    "Denver Broncos won Super Bowl 50 in Santa Clara, California.",
    "Question: who won? Answer: Denver Broncos",
    "Answer the question using the passages below. Reply with a short answer only.",
    "Passages Title Question Answer the a an of in on at to is was by for with",
    "Mount Everest is the highest mountain on Earth, in the Himalayas.",
] * 4

# A minimal ChatML template, so the chat-template path is exercised without a real chat model.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def tiny_causal_lm(
    out_dir: Path,
    texts: Iterable[str] = DEFAULT_TEXTS,
    *,
    arch: Literal["llama", "gpt2"] = "llama",
    chat_template: bool = False,
    vocab_size: int = 400,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """A random-init causal LM + tokenizer in ``out_dir`` (created); ``chat_template`` adds a ChatML-like template."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = bpe_tokenizer(texts, vocab_size=vocab_size)
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2,
                          num_key_value_heads=2, max_position_embeddings=1024, **common)
        model = LlamaForCausalLM(cfg)
    else:
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(n_embd=hidden, n_layer=layers, n_head=2, n_positions=1024, **common)
        model = GPT2LMHeadModel(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def tiny_seq2seq_lm(
    out_dir: Path,
    texts: Iterable[str] = DEFAULT_TEXTS,
    *,
    arch: Literal["t5", "bart"] = "t5",
    vocab_size: int = 400,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """A random-init encoder-decoder LM (T5 or BART) + tokenizer in ``out_dir`` (created)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = bpe_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    if arch == "t5":
        from transformers import T5Config, T5ForConditionalGeneration

        cfg = T5Config(vocab_size=len(tok), d_model=hidden, d_kv=hidden // 2, d_ff=2 * hidden, num_layers=layers,
                       num_decoder_layers=layers, num_heads=2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       decoder_start_token_id=tok.pad_token_id)
        model = T5ForConditionalGeneration(cfg)
    else:
        from transformers import BartConfig, BartForConditionalGeneration

        cfg = BartConfig(vocab_size=len(tok), d_model=hidden, encoder_layers=layers, decoder_layers=layers,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * hidden,
                         decoder_ffn_dim=2 * hidden, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         decoder_start_token_id=tok.eos_token_id, forced_bos_token_id=None, forced_eos_token_id=None)
        model = BartForConditionalGeneration(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.decoder_start_token_id = cfg.decoder_start_token_id
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def raw_log_softmax(g, prompt: str, target_ids: list[int]) -> torch.Tensor:
    """(T, V) log P(v | prompt, target_<t) from one unpadded forward pass of a ``Generator``'s raw model: the
    reference that padded, batched scoring is checked against."""
    p = torch.tensor([g.encode_prompts([prompt])[0]])
    y = torch.tensor([target_ids])
    with torch.no_grad():
        if g.is_seq2seq:
            dec = torch.cat([torch.tensor([[g.model.config.decoder_start_token_id]]), y[:, :-1]], 1)
            logits = g.model(input_ids=p, decoder_input_ids=dec).logits[0]
        else:
            logits = g.model(input_ids=torch.cat([p, y], 1)).logits[0, p.shape[1] - 1:-1]
    return logits.log_softmax(-1)


def raw_logprob(g, prompt: str, target_ids: list[int]) -> float:
    """log P(target | prompt) from ``raw_log_softmax``."""
    return float(raw_log_softmax(g, prompt, target_ids).gather(-1, torch.tensor(target_ids)[:, None]).sum())
