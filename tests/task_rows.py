"""Learnable toy rows of every task type (app.training.data), drawn from the tiny tokenizer's words:
the target follows from which word lists a row's words come from."""
from __future__ import annotations

import random

from tests.tiny_models import FILLER, NEGATIVE, NEUTRAL, POSITIVE


def ner_rows(n: int, seed: int = 0) -> list[dict]:
    """BIO rows: a POSITIVE word then a NEUTRAL word is one PER entity (B-PER I-PER); a NEGATIVE word
    alone is a LOC; filler words are O."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(2, 4)):
            kind = rng.random()
            if kind < 0.3:
                tokens += [rng.choice(POSITIVE), rng.choice(NEUTRAL)]
                tags += ["B-PER", "I-PER"]
            elif kind < 0.55:
                tokens.append(rng.choice(NEGATIVE))
                tags.append("B-LOC")
            else:
                tokens.append(rng.choice(FILLER))
                tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def regression_rows(n: int, seed: int = 0, pair: bool = False) -> list[dict]:
    """label = (positive words - negative words) / 2, among filler: a float in [-1, 1]."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        good, bad = rng.randint(0, 2), rng.randint(0, 2)
        words = rng.sample(FILLER, 3) + rng.sample(POSITIVE, good) + rng.sample(NEGATIVE, bad)
        rng.shuffle(words)
        row = {"text": " ".join(words), "label": (good - bad) / 2 + 0.0}
        if pair:
            row["text_pair"] = " ".join(rng.sample(FILLER, 3))
        rows.append(row)
    return rows


def multi_label_rows(n: int, seed: int = 0) -> list[dict]:
    """labels: "pos" when a POSITIVE word is present, "neg" for a NEGATIVE one, "obj" for a NEUTRAL one."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        words, labels = rng.sample(FILLER, 3), []
        for name, vocabulary in (("pos", POSITIVE), ("neg", NEGATIVE), ("obj", NEUTRAL)):
            if rng.random() < 0.5:
                words += rng.sample(vocabulary, 2)
                labels.append(name)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": labels})
    return rows
