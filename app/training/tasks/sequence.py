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


# the thresholds "auto" tries on the validation rows: 0.05, 0.10, ... 0.95
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
DEFAULT_THRESHOLD = 0.5


class MultiLabel(Task):
    """A sigmoid per label, binary cross-entropy; a label applies at probability >= threshold.

    With `threshold` None ("auto") the metrics are those at the threshold of THRESHOLD_GRID with the best
    micro-F1 on the rows scored (ties: the one nearest 0.5), reported as eval_threshold — the usual
    practice for multi-label tasks whose labels are rare: a title rarely makes any genre more likely than
    not, so at 0.5 a model predicts no label at all (bench/tasks.py, MovieLens genres)."""

    def model_kwargs(self, labels: list) -> dict[str, Any]:
        return {**label_kwargs(labels), "problem_type": "multi_label_classification"}

    def target(self, label: Any, index: dict) -> list[float]:
        hot = [0.0] * len(index)
        for name in label:
            hot[index[name]] = 1.0
        return hot

    def applies(self, output: torch.Tensor, threshold: float | None = None) -> list[int]:
        at = threshold if threshold is not None else (self.threshold if self.threshold is not None
                                                      else DEFAULT_THRESHOLD)
        return [int(p >= at) for p in torch.sigmoid(output).tolist()]

    def metrics(self, outputs: list[torch.Tensor], rows: Rows) -> dict[str, float]:
        from app.training.metrics import multi_label_metrics

        gold = [[int(v) for v in row] for row in rows.label_ids]
        at = self.threshold if self.threshold is not None else best_threshold(outputs, gold)
        chosen = {} if self.threshold is not None else {"eval_threshold": at}
        return {**multi_label_metrics([self.applies(o, at) for o in outputs], gold, outputs[0].shape[-1]), **chosen}

    def prediction(self, output: torch.Tensor, labels: list) -> dict[str, Any]:
        chosen = self.applies(output)
        return {"predicted": [label for label, on in zip(labels, chosen, strict=True) if on],
                "probabilities": dict(zip(map(str, labels), torch.sigmoid(output).tolist(), strict=True)),
                "logits": output.tolist()}


def best_threshold(outputs: list[torch.Tensor], gold: list[list[int]]) -> float:
    """The point of THRESHOLD_GRID with the best pooled (micro) F1 of `outputs` against `gold`; ties go to
    the one nearest DEFAULT_THRESHOLD."""
    probabilities, truth = torch.sigmoid(torch.stack(outputs).float()), torch.tensor(gold, dtype=torch.bool)

    def micro_f1(at: float) -> float:
        predicted = probabilities >= at
        return 2 * int((predicted & truth).sum()) / max(1, int(predicted.sum()) + int(truth.sum()))

    return max(THRESHOLD_GRID, key=lambda at: (micro_f1(at), -abs(at - DEFAULT_THRESHOLD)))
