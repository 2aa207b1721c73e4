"""The task abstraction and the rows every task type trains on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from app.training.batching import IGNORED
from app.training.data import Example



def label_kwargs(labels: list) -> dict[str, Any]:
    """num_labels, id2label and label2id of a classifier config for `labels` (in id order)."""
    return {
        "num_labels": len(labels),
        "id2label": {i: str(label) for i, label in enumerate(labels)},
        "label2id": {str(label): i for i, label in enumerate(labels)},
    }


@dataclass
class Rows:
    """Pre-tokenized examples; batches are padded to their own longest row. `label_ids` per row: a class
    id, a float (regression), a 0/1 list per label (multi-label) or a tag id per token (IGNORED where
    no tag is scored), padded with IGNORED."""

    features: list[dict[str, list[int]]]
    label_ids: list[Any]
    pad_id: int
    word_ids: list[list[int | None]] | None = None  # per row, for word-level masking (auxiliary MLM)
    task: Task | None = None  # None: single-label classification
    labels: list | None = None  # the job's label list (id order)

    def __len__(self) -> int:
        return len(self.label_ids)

    def batch(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        rows = [self.features[i] for i in indices]
        width = max(len(r["input_ids"]) for r in rows)
        out: dict[str, torch.Tensor] = {}
        for key in rows[0]:
            pad = self.pad_id if key == "input_ids" else 0
            out[key] = torch.tensor([r[key] + [pad] * (width - len(r[key])) for r in rows], device=device)
        targets = [self.label_ids[i] for i in indices]
        if self.task is not None and self.task.per_token:
            targets = [t + [IGNORED] * (width - len(t)) for t in targets]
        out["labels"] = torch.tensor(targets, device=device)
        return out


@dataclass(frozen=True)
class Task:
    """One task type: the model class and config its head needs, its targets, its metrics and its output.
    `threshold`: the probability at which a multi-label label applies; None: chosen on the validation rows
    (app.training.tasks.sequence.MultiLabel.metrics reports the one it chose as eval_threshold)."""

    name: str
    threshold: float | None = 0.5

    per_token = False

    def model_class(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def model_kwargs(self, labels: list) -> dict[str, Any]:
        """from_pretrained keyword arguments: the head's width, its labels and its loss (problem_type)."""
        return label_kwargs(labels)

    def encode(self, tokenizer: Any, examples: list[Example], labels: list, max_length: int) -> Rows:
        texts = [e.text for e in examples]
        pairs = [e.text_pair for e in examples] if examples and examples[0].text_pair is not None else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        index = {label: i for i, label in enumerate(labels)}
        return self._rows(tokenizer, encoded, [self.target(e.label, index) for e in examples], labels)

    def _rows(self, tokenizer: Any, encoded: Any, targets: list, labels: list) -> Rows:
        n = len(targets)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
        features = [{k: encoded[k][i] for k in keys} for i in range(n)]
        word_ids = [encoded.word_ids(i) for i in range(n)] if tokenizer.is_fast else None
        return Rows(features, targets, tokenizer.pad_token_id or 0, word_ids, self, labels)

    def init_head(self, model: torch.nn.Module, examples: list[Example]) -> str | None:
        """Set up the fresh head from the training data before training (default: nothing); what was done,
        for the job's events."""
        return None

    def target(self, label: Any, index: dict) -> Any:
        return index[label]

    def outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """What each row of a batch's logits is scored on (token tasks: only the scored positions)."""
        return list(logits.float().cpu())

    def metrics(self, outputs: list[torch.Tensor], rows: Rows) -> dict[str, float]:
        from app.training.metrics import classification_metrics

        return classification_metrics([int(o.argmax()) for o in outputs], rows.label_ids, outputs[0].shape[-1])

    def prediction(self, output: torch.Tensor, labels: list) -> dict[str, Any]:
        """One row's answer: "predicted" (a label, a number, a label list or a tag per word) and its scores."""
        row = output.tolist()
        return {"predicted": labels[max(range(len(row)), key=row.__getitem__)], "logits": row}


def peft_task_type(model: torch.nn.Module) -> Any:
    """peft's TaskType for the head `model` carries (TOKEN_CLS for a per-token head): it decides how peft's
    wrapper passes labels and what adapter_config.json tells loaders outside the service."""
    from peft import TaskType

    return TaskType.TOKEN_CLS if type(model).__name__.endswith("ForTokenClassification") else TaskType.SEQ_CLS
