"""LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution"): fit the head alone first (a linear probe over the frozen encoder), then fine-tune
everything the method trains starting from that head, so a random head does not distort the features
while it is still wrong.

The probe trains only the head's parameters for half the job's epochs (rounded up) at learning rate 1e-3
(partial's linear-probe rate, SentEval's probes), with the job's warm-up and decay, on the same batches.
It keeps its own checkpoints (`linear_probe/`, tagged phase "linear_probe"); fine-tuning then starts
with a fresh optimiser. A finished probe re-run from its last checkpoint trains nothing and restores
its head and random state, which is how a job resumed at the boundary continues exactly.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from app.fsio import replace_file
from app.training.base import ProgressSink, TrainContext, TrainingError
from app.training.checkpoints import latest_complete_checkpoint
from app.training.classification import Classifier
from app.training.engine import RunResult, optimize
from app.training.stability.regularizers import is_head

PROBE_LEARNING_RATE = 1e-3
PHASE = "linear_probe"
RECORD = "phase.json"  # the finished probe's accounting, in its checkpoint dir
LABEL = "LP-FT linear probe: "


def probe_epochs(n_epochs: int) -> int:
    return max(1, math.ceil(n_epochs / 2))


@contextmanager
def head_only(model: torch.nn.Module) -> Iterator[list[str]]:
    """Within the block only the head's trainable parameters train; yields their names."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    head = [name for name, on in flags.items() if on and is_head(name)]
    try:
        for name, param in model.named_parameters():
            param.requires_grad_(name in head)
        yield head
    finally:
        for name, param in model.named_parameters():
            param.requires_grad_(flags[name])


def finished_probe(directory: Path) -> dict[str, Any] | None:
    """The accounting of a probe that finished in an earlier attempt ({"steps", "trained_tokens", "flops"})."""
    record = directory / RECORD
    return json.loads(record.read_text()) if record.is_file() else None


def run_linear_probe(classifier: Classifier, ctx: TrainContext, directory: Path, sink: ProgressSink,
                     label: str = "") -> RunResult:
    """Train the head alone (resuming from `directory`'s checkpoints); the model keeps the probed head.
    `label` prefixes its messages (a seed's)."""
    hp = classifier.hyperparameters
    probe_hp = dataclasses.replace(hp, n_epochs=probe_epochs(hp.n_epochs), learning_rate=PROBE_LEARNING_RATE,
                                   select_best=False)
    with head_only(classifier.trained) as head:
        if not head:
            raise TrainingError(f"{ctx.method} trains no classification head to probe; leave stability.lp_ft out.",
                                code="invalid_method_settings", param=f"method.{ctx.method}.stability.lp_ft")
        sink.message(f"{label}{LABEL}phase 1 of 2: the head alone ({len(head)} tensors) for {probe_hp.n_epochs} epoch(s) at "
                     f"learning rate {PROBE_LEARNING_RATE:g}, encoder frozen (Kumar et al. 2022)",
                     data={"phase": PHASE, "epochs": probe_hp.n_epochs, "learning_rate": PROBE_LEARNING_RATE})
        run = optimize(classifier.run(ctx, hyperparameters=probe_hp, sink=sink, checkpoint_dir=directory,
                                      resume_from=latest_complete_checkpoint(directory), label=label + LABEL,
                                      tags={"phase": PHASE}))
    if run.status == "succeeded":
        replace_file(directory / RECORD, json.dumps({"steps": run.step, "trained_tokens": run.trained_tokens,
                                                     "flops": run.flops}))
    return run
