"""Answer generation and scoring over causal and seq2seq language models."""
from ragtune.generation.generator import Generation, Generator
from ragtune.generation.prompts import DEFAULT_TEMPLATE, build_prompt

__all__ = ["Generator", "Generation", "build_prompt", "DEFAULT_TEMPLATE"]
