"""Token classification (NER, BIO tags): a per-token head, each word's tag on its first sub-token."""
from __future__ import annotations

from typing import Any

import torch

from app.training.data import Example
from app.training.tasks.base import IGNORED, Rows, Task


def first_subtokens(word_ids: list[int | None]) -> list[int]:
    """Positions of each word's first sub-token (specials and continuation pieces skipped), in word order."""
    seen, positions = set(), []
    for position, word in enumerate(word_ids):
        if word is not None and word not in seen:
            seen.add(word)
            positions.append(position)
    return positions


class TokenClassification(Task):
    per_token = True

    def model_class(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def encode(self, tokenizer: Any, examples: list[Example], labels: list, max_length: int) -> Rows:
        if not tokenizer.is_fast:
            raise ValueError("token classification needs a fast tokenizer (word ids)")
        encoded = tokenizer([e.tokens for e in examples], is_split_into_words=True, truncation=True,
                            max_length=max_length)
        index = {label: i for i, label in enumerate(labels)}
        targets = []
        for i, example in enumerate(examples):
            word_ids = encoded.word_ids(i)
            row = [IGNORED] * len(word_ids)
            for position in first_subtokens(word_ids):
                row[position] = index[example.label[word_ids[position]]]
            targets.append(row)
        return self._rows(tokenizer, encoded, targets, labels)

    def outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per row, the logits of the scored positions (each kept word's first sub-token), in word order."""
        scored = batch["labels"] != IGNORED
        return [row[mask].float().cpu() for row, mask in zip(logits, scored, strict=True)]

    def metrics(self, outputs: list[torch.Tensor], rows: Rows) -> dict[str, float]:
        from app.training.metrics import entity_metrics

        names = [str(label) for label in rows.labels]
        gold = [[names[t] for t in row if t != IGNORED] for row in rows.label_ids]
        return entity_metrics([[names[int(t)] for t in o.argmax(-1)] for o in outputs], gold)

    def prediction(self, output: torch.Tensor, labels: list) -> dict[str, Any]:
        tags = [str(labels[int(t)]) for t in output.argmax(-1)] if len(output) else []
        return {"predicted": tags, "logits": output.tolist()}
