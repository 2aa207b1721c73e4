"""Keep the best evaluated weights of a run (model selection on the job's validation file).

Scored by validation accuracy, ties broken by lower loss, then by the earlier step (as the Hugging
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

BEST = "best"


def score(metrics: dict[str, float]) -> tuple[float, ...]:
    """Higher is better: eval_score (a mixture's mean task figure) or accuracy, then lower loss."""
    return metrics.get("eval_score", metrics.get("eval_accuracy", float("-inf"))), -metrics.get("eval_loss", float("inf"))


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
        tmp = self.path.with_name(f".{BEST}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        save_file(trainable_state(model), tmp / "trainable.safetensors")
        self.record = {"step": step, "metrics": metrics}
        (tmp / "best.json").write_text(json.dumps(self.record))
        fsync_tree(tmp)
        replace_dir(tmp, self.path)

    def restore(self, model: torch.nn.Module, last_step: int, sink: ProgressSink, label: str = "") -> int | None:
        """Load the best weights into `model` unless the last step is the best; says which in an event."""
        if self.record is None or self.record["step"] == last_step:
            return None
        copy_into(model, load_file(self.path / "trainable.safetensors"))
        step, metrics = self.record["step"], self.record["metrics"]
        sink.message(f"{label}Selected the checkpoint of step {step} (validation accuracy "
                     f"{metrics.get('eval_accuracy', float('nan')):.4f}, loss {metrics.get('eval_loss', float('nan')):.4f}) "
                     f"over the last step {last_step}", data={"selected_step": step, "metrics": metrics})
        return step
