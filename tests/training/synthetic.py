"""A synthetic knowledge base the tests invent: entities nobody has heard of, one passage each, questions in
several templates. Nothing in it can be answered without retrieving the right passage.

The word-level builders below give tiny random-init models an easy, fast task: every entity name and city is
ONE token for both the encoder and the generator, passages share one template, sequences are ~12 tokens, and
dropout is off. Copying the city out of the passage is then a one-attention-head pattern a small model learns
in a few hundred cheap steps, so a test can afford to prove end-to-end learning.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ragtune.corpus.squad import QARecord

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]
TEMPLATES = ["where does {n} live ?", "which town is home to {n} ?", "{n} lives in which town ?"]
PASSAGE = "{n} lives in {c} ."
PROMPT = "{passages}Q: {question}\nA:"


def _words(n: int, rng: random.Random, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(3))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


@dataclass
class KB:
    names: list[str]
    cities: list[str]  # cities[i] is where names[i] lives

    @property
    def passages(self) -> list[str]:
        return [PASSAGE.format(n=n, c=c) for n, c in zip(self.names, self.cities)]

    def rows(self, split: str, held_out: int = 0) -> list[QARecord]:
        """Training and dev questions.

        With ``held_out = 0`` entity i's dev question uses template i % 3 and its other templates are for
        training. With ``held_out = n`` the last n entities are dev only (all templates), so the generator cannot
        memorise their answers and must read them from the retrieved passage.
        """
        out = []
        n_train = len(self.names) - held_out
        for i, (n, c) in enumerate(zip(self.names, self.cities)):
            for t, tpl in enumerate(TEMPLATES):
                is_dev = (i >= n_train) if held_out else (t == i % len(TEMPLATES))
                if is_dev == (split == "dev"):
                    out.append(QARecord(tpl.format(n=n), [c], positive_texts=[PASSAGE.format(n=n, c=c)]))
        return out

    def texts(self) -> list[str]:
        """Everything the tokenizers should know as words."""
        return self.passages + [q.question for q in self.rows("train") + self.rows("dev")] + [PROMPT, "Q: A:", "[1]"] * 5


def make_kb(n_entities: int = 50, n_cities: int = 25, seed: int = 0) -> KB:
    rng = random.Random(seed)
    taken: set[str] = set()
    names = _words(n_entities, rng, taken)
    cities = _words(n_cities, rng, taken)
    # The first entities cover every city once, so with held-out entities at the end every city is still a
    # training answer: a dev miss then means the reader failed, not that it never saw the word as an answer.
    return KB(names, [cities[i] if i < n_cities else rng.choice(cities) for i in range(n_entities)])


def write_corpus(kb: KB, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, p in enumerate(kb.passages):
            f.write(json.dumps({"id": f"e{i}", "text": p}) + "\n")
    return path


# -- word-level tiny models ---------------------------------------------------------------------------------

def _vocab(texts: Iterable[str], special: list[str]) -> dict[str, int]:
    # both cases: the encoder lowercases its input, the generator does not
    words = sorted({v for t in texts for w in t.split() for v in (w, w.lower())})
    return {w: i for i, w in enumerate(special + [w for w in words if w not in special])}


def word_encoder_dir(out_dir: Path, texts: Iterable[str], *, hidden: int = 32, layers: int = 1, seed: int = 0) -> Path:
    """A random-init BERT (no dropout) whose tokenizer maps every whitespace word to one id; ``Encoder`` loads it."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = _vocab(texts, special)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(out_dir)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    BertModel(cfg).save_pretrained(out_dir)
    return out_dir


def word_lm_dir(out_dir: Path, texts: Iterable[str], *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random-init Llama with tied embeddings (copying a context token is then a natural circuit) and a
    word-level tokenizer; ``Generator`` loads it. Decoding joins words with spaces."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    special = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = _vocab(texts, special)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    model.save_pretrained(out_dir)
    return out_dir
