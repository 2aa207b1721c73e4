"""Tiny random models and learnable toy data, built offline in milliseconds."""
from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = "good great happy fine excellent lovely nice superb".split()
NEGATIVE = "bad awful sad poor terrible horrible nasty dreadful".split()
NEUTRAL = "table chair door window item thing stuff object".split()
FILLER = ("the a an is was it this that and or but of to in on at for with very really quite "
          "movie film book song food day night place service product review").split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *NEUTRAL, *FILLER,
         *[str(i) for i in range(100)], "item", ".", ",", "!", "?"]


def make_tiny_bert(path: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A random BertConfig(hidden=32, 2 layers) model + word-level BertTokenizerFast, saved to `path`."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(VOCAB))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=256, architectures=["BertForMaskedLM"])
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_classification_rows(n: int, n_labels: int = 2, seed: int = 0, pair: bool = False) -> list[dict]:
    """Rows whose label is signalled by label-specific words among filler: learnable in a few steps."""
    rng = random.Random(seed)
    vocabularies = [POSITIVE, NEGATIVE, NEUTRAL][:n_labels]
    names = ["pos", "neg", "neu"][:n_labels]
    rows = []
    for i in range(n):
        label = i % n_labels
        words = rng.sample(FILLER, 4) + rng.sample(vocabularies[label], 2)
        rng.shuffle(words)
        row = {"text": " ".join(words), "label": names[label]}
        if pair:
            row["text_pair"] = " ".join(rng.sample(FILLER, 3))
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
