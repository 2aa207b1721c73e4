"""The entry point of every task method's strategy: the shared classifier and loop
(app.training.classification), or, with a `stability` block, its remedies (app.training.stability)."""
from __future__ import annotations

from app.training.base import TrainContext, TrainResult
from app.training.classification import Build, Prepare, Save, TaskData, builder, finish_classifier, load_task
from app.training.config import TaskMethodSettings
from app.training.engine import optimize
from app.training.stability.train import train_stably


def run_classification(ctx: TrainContext, prepare: Prepare, save: Save) -> TrainResult:
    """Train `ctx`'s task method: `prepare` makes the method's model trainable, `save` writes its files."""
    return run_task(ctx, load_task(ctx), builder(prepare), save)


def run_task(ctx: TrainContext, task: TaskData, build: Build, save: Save) -> TrainResult:
    """Train the classifier `build` makes (the stability block's remedies when given), then save it."""
    if ctx.settings_as(TaskMethodSettings).stability is not None:
        return train_stably(ctx, task, build, save)
    classifier = build(ctx, task)
    return finish_classifier(ctx, task, classifier, optimize(classifier.run(ctx)), save)
