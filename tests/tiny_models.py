"""Tiny random models and learnable toy data, built offline in well under a second.

`make_tiny_bert` mirrors a real BERT checkpoint (bert-base-uncased, all-MiniLM-L6-v2): encoder,
pooler and MLM head are all saved, so a classification model built from it only adds the head.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = "good great happy fine excellent lovely nice superb".split()
NEGATIVE = "bad awful sad poor terrible horrible nasty dreadful".split()
NEUTRAL = "table chair door window item thing stuff object".split()
FILLER = ("the a an is was it this that and or but of to in on at for with very really quite "
          "movie film book song food day night place service product review").split()
COMMON = """
about above across after again against all almost alone along already also although always am among
another any anyone anything are area around as ask asked away back be became because become been before
began behind being believe below best better between big both boy bring brought business by call came
can car case cause certain change child children city close come company could country course cut did
different do does done door down during each early end enough even ever every eye face fact family far
father feel few field find first follow found four free friend from full game gave get girl give given
go going gone got government group grow had half hand hard has have he head hear heard help her here
high him himself his home hope house how however idea if important into its just keep kind knew know
land large last late later lead learn least leave left less let life light like line little live long
look made make man many may me mean men might mind money more morning most mother move much music must
my name near need never new next no not nothing now number off often old once one only open other our
out over own part people perhaps person picture play point power present problem put question quickly
rather read ready real reason right room round run said same saw say school second see seem seen set
several she should show side since small so some something sometimes soon sound start state still stop
story study such sure system take talk tell than their them then there these they think those though
thought three through time today together told too took top toward town tree true try turn two under
until up upon us use used usually want war was water way we week well went were what when where which
while white who whole why will without woman word words work world would write year yes yet you young
your
""".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *NEUTRAL, *FILLER, *COMMON,
         *[str(i) for i in range(100)], ".", ",", "!", "?", "'", '"', "-", ":", ";", "(", ")"]


def make_tiny_bert(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random BertConfig(hidden=32, 2 layers, 2 heads, intermediate 64) + word-level tokenizer.

    Saved with `save_pretrained` as a BertForPreTraining checkpoint (encoder + pooler + MLM head),
    so AutoModelForSequenceClassification and AutoModelForMaskedLM both load it.
    """
    import torch
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(VOCAB))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores `vocab_file=`; pass the vocabulary itself (token -> id)
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128, architectures=["BertForPreTraining"])
    torch.manual_seed(seed)
    BertForPreTraining(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_classification_rows(n: int, n_labels: int = 2, seed: int = 0, pair: bool = False) -> list[dict]:
    """Rows whose label is signalled by label-specific words among filler: learnable in a few steps.

    With `pair=True` every row gets a `text_pair` too (NLI-style input), also drawn from filler.
    """
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
            row["text_pair"] = " ".join(rng.sample(FILLER + COMMON, 3))
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write `rows` as JSON lines (creating parent directories)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
