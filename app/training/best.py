"""Keep the best evaluated weights of a run (model selection on the job's validation file).

Scored by the task type's validation figure (accuracy; micro-F1 for multi-label, entity F1 for NER; a
mixture's mean), ties broken by lower loss, then by the earlier step (as the Hugging
Face Trainer's `load_best_model_at_end`). The weights that train are written to `best/` in the job's
checkpoint dir (atomically), so a paused or re-queued run compares against, and ends with, the same
best as an uninterrupted one.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from app.fsio import fsync_tree, replace_dir
from app.training.base import ProgressSink
from app.training.checkpoints import copy_into, trainable_state
from app.training.sharding import writes

BEST = "best"


# the figure that ranks checkpoints, the first a task type reports: a mixture's mean task figure, multi-label
# micro-F1 (subset accuracy is 0 for long on sparse labels), entity F1 (NER), accuracy; regression: loss alone
SELECTION_METRICS = ("eval_score", "eval_micro_f1", "eval_f1", "eval_accuracy")


def selection_metric(metrics: dict[str, float]) -> tuple[str, float]:
    """(name, value) of the figure that ranks `metrics`' checkpoint; ("", -inf) when it has none."""
    name = next((name for name in SELECTION_METRICS if name in metrics), "")
    return name, metrics.get(name, float("-inf"))


def score(metrics: dict[str, float]) -> tuple[float, ...]:
    """Higher is better: the task type's selection figure, then lower loss."""
    return selection_metric(metrics)[1], -metrics.get("eval_loss", float("inf"))


class BestCheckpoint:
    def __init__(self, checkpoint_dir: Path, score: Callable[[dict[str, float]], tuple[float, ...]] = score):
        """`score`: higher is better (default: accuracy, then lower loss; early stopping brings its own)."""
        self.path, self.score = checkpoint_dir / BEST, score
        record = self.path / "best.json"
        self.record = json.loads(record.read_text()) if record.is_file() else None

    def offer(self, step: int, metrics: dict[str, float], model: torch.nn.Module) -> None:
        """Keep `model`'s trainable weights if `metrics` beat the best so far."""
        if self.record is not None and (step <= self.record["step"]
                                        or self.score(metrics) <= self.score(self.record["metrics"])):
            return
        weights = trainable_state(model)  # a sharded model's: gathered onto rank 0, which alone writes
        self.record = {"step": step, "metrics": metrics}
        if not writes(model):
            return
        tmp = self.path.with_name(f".{BEST}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        save_file(weights, tmp / "trainable.safetensors")
        (tmp / "best.json").write_text(json.dumps(self.record))
        fsync_tree(tmp)
        replace_dir(tmp, self.path)

    def restore(self, model: torch.nn.Module, last_step: int, sink: ProgressSink, label: str = "") -> int | None:
        """Load the best weights into `model` unless the last step is the best; says which in an event."""
        if self.record is None or self.record["step"] == last_step:
            return None
        copy_into(model, load_file(self.path / "trainable.safetensors") if writes(model) else {})
        step, metrics = self.record["step"], self.record["metrics"]
        name, value = selection_metric(metrics)
        figure = f"validation {name.removeprefix('eval_')} {value:.4f}, " if name else "validation "
        sink.message(f"{label}Selected the checkpoint of step {step} ({figure}loss "
                     f"{metrics.get('eval_loss', float('nan')):.4f}) over the last step {last_step}",
                     data={"selected_step": step, "metrics": metrics})
        return step
