"""Regression and multi-label classification: sequence heads like single-label classification, with
another target, loss (transformers' problem_type) and metrics."""
from __future__ import annotations

from typing import Any

import torch

from app.training.data import Example
from app.training.tasks.base import Rows, Task, label_kwargs


class Regression(Task):
    """One output, MSE loss; MSE, Pearson and Spearman reported."""

    def model_kwargs(self, labels: list) -> dict[str, Any]:
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}

    def target(self, label: Any, index: dict) -> float:
        return float(label)

    def init_head(self, model: torch.nn.Module, examples: list[Example]) -> str | None:
        """Start the one-output head at the training labels' mean (its bias; the weights stay random): a
        label scale far from 0 (STS-B's 0-5, log counts ~9) is otherwise most of what a small fine-tuning
        rate spends its steps on, and the model still outputs labels on their own scale, as plain
        transformers loads it."""
        outputs = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
        if not outputs or outputs[-1].bias is None or not examples:
            return None
        mean = sum(e.label for e in examples) / len(examples)
        with torch.no_grad():
            outputs[-1].bias.fill_(mean)
        return f"Regression head starts at the training labels' mean {mean:.4g}"

    def metrics(self, outputs: list[torch.Tensor], rows: Rows) -> dict[str, float]:
        from app.training.metrics import regression_metrics

        return regression_metrics([float(o[0]) for o in outputs], rows.label_ids)

    def prediction(self, output: torch.Tensor, labels: list) -> dict[str, Any]:
        return {"predicted": float(output[0]), "logits": output.tolist()}


class MultiLabel(Task):
    """A sigmoid per label, binary cross-entropy; a label applies at probability >= threshold."""

    def model_kwargs(self, labels: list) -> dict[str, Any]:
        return {**label_kwargs(labels), "problem_type": "multi_label_classification"}

    def target(self, label: Any, index: dict) -> list[float]:
        hot = [0.0] * len(index)
        for name in label:
            hot[index[name]] = 1.0
        return hot

    def applies(self, output: torch.Tensor) -> list[int]:
        return [int(p >= self.threshold) for p in torch.sigmoid(output).tolist()]

    def metrics(self, outputs: list[torch.Tensor], rows: Rows) -> dict[str, float]:
        from app.training.metrics import multi_label_metrics

        gold = [[int(v) for v in row] for row in rows.label_ids]
        return multi_label_metrics([self.applies(o) for o in outputs], gold, outputs[0].shape[-1])

    def prediction(self, output: torch.Tensor, labels: list) -> dict[str, Any]:
        chosen = self.applies(output)
        return {"predicted": [label for label, on in zip(labels, chosen, strict=True) if on],
                "probabilities": dict(zip(map(str, labels), torch.sigmoid(output).tolist(), strict=True)),
                "logits": output.tolist()}
