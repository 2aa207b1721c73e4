"""Early stopping on the validation set (Dodge et al. 2020 stop unpromising runs early; Prechelt 1998's
patience criterion, as the Hugging Face Trainer's EarlyStoppingCallback).

An evaluation improves when its score beats every earlier one. Its counters sit in the run's checkpoint
state, so a resumed run stops exactly where an uninterrupted one stops. The engine keeps the best
weights by the same score and restores them, so the artifact is the best checkpoint.
"""
from __future__ import annotations

import math
from typing import Any

from app.training.stability.settings import METRICS, EarlyStoppingSettings


def metric_score(metric: str):
    """Score function for `metric` ("accuracy", "macro_f1", "loss"): higher is better; accuracy and
    macro-F1 break ties by the lower loss, loss by the higher accuracy (the engine's own order)."""
    key, higher = METRICS[metric]

    def score(metrics: dict[str, float]) -> tuple[float, ...]:
        value = metrics.get(key, math.nan)
        value = value if math.isfinite(value) else -math.inf if higher else math.inf
        if higher:
            return value, -metrics.get("eval_loss", math.inf)
        return -value, metrics.get("eval_accuracy", -math.inf)
    return score


class PatienceStopping:
    """Implements app.training.engine.EarlyStopping for `early_stopping: {patience, metric}`."""

    def __init__(self, settings: EarlyStoppingSettings):
        self.patience, self.metric = settings.patience, settings.metric
        self.score = metric_score(settings.metric)
        self.state: dict[str, Any] = {"best_score": None, "best_step": None, "best_value": None,
                                      "bad_evaluations": 0}

    def should_stop(self, step: int, metrics: dict[str, float]) -> bool:
        score = list(self.score(metrics))
        if self.state["best_score"] is None or score > self.state["best_score"]:
            key = METRICS[self.metric][0]
            self.state.update(best_score=score, best_step=step, best_value=metrics.get(key), bad_evaluations=0)
            return False
        self.state["bad_evaluations"] += 1
        return self.state["bad_evaluations"] >= self.patience

    def reason(self, step: int) -> tuple[str, dict[str, Any]]:
        best_step, best_value = self.state["best_step"], self.state["best_value"]
        message = (f"Early stopping at step {step}: validation {self.metric} has not improved for {self.patience} "
                   f"evaluation(s) since step {best_step} ({best_value:.4f}); the artifact is the checkpoint of "
                   f"step {best_step}")
        return message, {"stopped_step": step, "best_step": best_step, "metric": self.metric,
                         "best_value": best_value, "patience": self.patience}
