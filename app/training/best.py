"""Keep the best evaluated weights of a run (model selection on the job's validation file).

Scored by the task type's validation figure (accuracy; micro-F1 for multi-label, entity F1 for NER; a
mixture's mean), ties broken by lower loss, then by the earlier step (as the Hugging
Face Trainer's `load_best_model_at_end`). With a `tolerance` (by default: one standard error of the
figure over the validation rows) the pick is the latest checkpoint within that tolerance of the best,
the "one-standard-error rule" (Breiman et al. 1984; Hastie et al., ESL §7.10): on a few hundred
validation rows the top figure is partly luck, and the luckiest epoch is more often an early,
less-trained one. On minilm-l6 with 500 validation tweets the strict best lost 0.4 test points on
average to the last step (LoRA, IA3, BitFit; bench/peft.py). The weights that train are written to
`best/` in the job's checkpoint dir (atomically), so a paused or re-queued run compares against, and
ends with, the same pick as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
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


def standard_error(metrics: dict[str, float]) -> float:
    """One binomial standard error of the selection figure, sqrt(p(1 - p) / n) over the n = `eval_samples`
    validation rows, when the figure is a share of them; 0 when unknown (regression ranks by loss)."""
    name, value = selection_metric(metrics)
    rows = metrics.get("eval_samples", 0)
    if not name or rows <= 0 or not 0.0 <= value <= 1.0:
        return 0.0
    return math.sqrt(value * (1.0 - value) / rows)


def no_tolerance(metrics: dict[str, float]) -> float:
    return 0.0


class BestCheckpoint:
    def __init__(self, checkpoint_dir: Path, score: Callable[[dict[str, float]], tuple[float, ...]] = score,
                 tolerance: Callable[[dict[str, float]], float] = no_tolerance):
        """`score`: higher is better (default: accuracy, then lower loss; early stopping brings its own).
        `tolerance(best metrics)`: how far below the best figure a later checkpoint may be and still be picked."""
        self.path, self.score, self.tolerance = checkpoint_dir / BEST, score, tolerance
        record = self.path / "best.json"
        self.record = json.loads(record.read_text()) if record.is_file() else None
        # the best figure so far ({"step", "metrics"}); the pick (record) is it or a later checkpoint
        self.top = None if self.record is None else self.record.get(
            "top", {"step": self.record["step"], "metrics": self.record["metrics"]})

    def _picks(self, step: int, metrics: dict[str, float]) -> bool:
        """Whether the checkpoint of `step` becomes the pick: a new best always does; a later one within
        the tolerance of the best does too."""
        if self.top is None or self.score(metrics) > self.score(self.top["metrics"]):
            self.top = {"step": step, "metrics": metrics}
            return True
        margin = self.tolerance(self.top["metrics"])
        return margin > 0 and selection_metric(metrics)[1] >= selection_metric(self.top["metrics"])[1] - margin

    def offer(self, step: int, metrics: dict[str, float], model: torch.nn.Module) -> None:
        """Keep `model`'s trainable weights if the checkpoint of `step` becomes the pick."""
        if (self.record is not None and step <= self.record["step"]) or not self._picks(step, metrics):
            return
        weights = trainable_state(model)  # a sharded model's: gathered onto rank 0, which alone writes
        self.record = {"step": step, "metrics": metrics, "top": self.top}
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
        top = self.record.get("top") or {"step": step}
        why = "" if top["step"] == step else (
            f", the latest within one standard error ({self.tolerance(top['metrics']):.4f}) of the best, "
            f"{selection_metric(top['metrics'])[1]:.4f} at step {top['step']}")
        sink.message(f"{label}Selected the checkpoint of step {step} ({figure}loss "
                     f"{metrics.get('eval_loss', float('nan')):.4f}{why}) over the last step {last_step}",
                     data={"selected_step": step, "metrics": metrics, "best_step": top["step"]})
        return step
