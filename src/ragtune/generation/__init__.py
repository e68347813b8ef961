"""Answer generation and scoring over causal and seq2seq language models."""
from ragtune.generation.generator import Generator
from ragtune.generation.options import DecodeOptions, Generation, cut_at_stop
from ragtune.generation.prompts import DEFAULT_TEMPLATE, build_prompt

__all__ = ["Generator", "Generation", "DecodeOptions", "cut_at_stop", "build_prompt", "DEFAULT_TEMPLATE"]
