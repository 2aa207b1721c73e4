"""A task method's training with a `stability` block: one seed (runner.py) or several competing ones
(seeds.py, Dodge et al. 2020), then the ending every task method shares."""
from __future__ import annotations

import math

from app.training.base import TrainContext, TrainResult
from app.training.classification import Build, Save, TaskData, finish_classifier
from app.training.stability.runner import (job_wide, probe_steps, require_validation, saving, stability_of,
                                           stopped_result, train_seed)
from app.training.stability.seeds import train_seeds


def train_stably(ctx: TrainContext, task: TaskData, build: Build, save: Save) -> TrainResult:
    """run_classification for a job with a stability block."""
    stability = stability_of(ctx)
    require_validation(ctx, stability)
    if stability.n_seeds > 1:
        return train_seeds(ctx, task, build, saving(save, stability))
    hp = ctx.hyperparameters
    steps_per_epoch = math.ceil(len(task.train_examples) / hp.batch_size)
    probe = probe_steps(stability, hp.n_epochs, steps_per_epoch)
    outcome = train_seed(ctx, task, build, seed=hp.seed, root=ctx.checkpoint_dir, offsets=(0, probe),
                         total_steps=probe + hp.n_epochs * steps_per_epoch if probe else None)
    run = job_wide(outcome)
    if run.status != "succeeded":
        return stopped_result(outcome, run.step)
    record = {"stopped_early_at": run.stopped_early_at, "probe_steps": outcome.probe["steps"]}
    return finish_classifier(ctx, task, outcome.classifier, run, saving(save, stability),
                             manifest={"stability": {**stability.model_dump(mode="json", exclude_unset=True),
                                                     "outcome": record}})
