"""One seed of a task method's training with a `stability` block (train.py runs the block): the shared
classifier and loop of app.training.classification and app.training.engine, with the block's hooks set.

One seed runs as: build the classifier under the seed (R4F normalises its head), the LP-FT probe when
asked (linear_probe.py), then fine-tuning with layer-wise learning rates, a regulariser and early
stopping as asked, paused at the discard point when several seeds compete (seeds.py). Checkpoints:
a single seed without LP-FT keeps the job's own layout; LP-FT's phases keep theirs in `linear_probe/`
and `fine_tune/` of the seed's directory, so a job resumes from wherever it stopped.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from app.training.base import OffsetSink, TrainContext, TrainingError, TrainResult
from app.training.checkpoints import latest_complete_checkpoint
from app.training.classification import Build, Classifier, Save, TaskData
from app.training.config import TaskMethodSettings
from app.training.engine import RunResult, optimize
from app.training.stability.early_stopping import PatienceStopping
from app.training.stability.layerwise import layerwise_groups
from app.training.stability.linear_probe import PHASE, finished_probe, probe_epochs, run_linear_probe
from app.training.stability.regularizers import make_objective, normalize_head, unnormalize_head
from app.training.stability.settings import StabilitySettings

FINE_TUNE = "fine_tune"
FINE_TUNE_LABEL = "LP-FT fine-tuning: "
NO_PROBE = {"steps": 0, "trained_tokens": 0, "flops": 0.0}


@dataclasses.dataclass
class SeedRun:
    """One seed's training so far: `run` is its fine-tuning phase's (local step numbers, from the probe's
    end), `probe` the probe's accounting, `offset` the job-wide step of fine-tuning's step 0."""

    seed: int
    classifier: Classifier
    run: RunResult
    probe: dict[str, float]
    offset: int
    seconds: float

    @property
    def steps(self) -> int:
        return int(self.probe["steps"]) + self.run.step

    @property
    def trained_tokens(self) -> int:
        return int(self.probe["trained_tokens"]) + self.run.trained_tokens

    @property
    def flops(self) -> float:
        return self.probe["flops"] + self.run.flops


def stability_of(ctx: TrainContext) -> StabilitySettings:
    stability = ctx.settings_as(TaskMethodSettings).stability
    if stability is None:
        raise TypeError("train_stably needs a stability block")
    return stability


def phase_dirs(root: Path, lp_ft: bool) -> tuple[Path | None, Path]:
    """(the probe's checkpoint dir, fine-tuning's) of a seed whose checkpoints live in `root`."""
    return (root / PHASE, root / FINE_TUNE) if lp_ft else (None, root)


def probe_steps(stability: StabilitySettings, n_epochs: int, steps_per_epoch: int) -> int:
    return probe_epochs(n_epochs) * steps_per_epoch if stability.lp_ft else 0


def seed_context(ctx: TrainContext, seed: int, root: Path, sink: OffsetSink) -> TrainContext:
    """ctx for one seed's fine-tuning phase: its seed, checkpoints and step numbers."""
    _, fine_tune = phase_dirs(root, stability_of(ctx).lp_ft)
    resume = ctx.resume_from if fine_tune == ctx.checkpoint_dir else latest_complete_checkpoint(fine_tune)
    return dataclasses.replace(ctx, hyperparameters=dataclasses.replace(ctx.hyperparameters, seed=seed),
                               checkpoint_dir=fine_tune, resume_from=resume, sink=sink)


def build_seed_classifier(ctx: TrainContext, task: TaskData, build: Build) -> Classifier:
    """The method's classifier, plus R4F's spectrally normalised head."""
    classifier = build(ctx, task)
    regularizer = stability_of(ctx).regularizer
    if regularizer is not None and regularizer.type == "r4f":
        names = normalize_head(classifier.model, len(task.labels))
        ctx.sink.message(f"R4F: spectrally normalised head {names} (Aghajanyan et al. 2021)", data={"head": names})
    return classifier


def fine_tuning_hooks(ctx: TrainContext, classifier: Classifier) -> dict[str, Any]:
    """The engine Run fields the block asks for, built on the model as fine-tuning starts."""
    stability, hooks = stability_of(ctx), {}
    if stability.layerwise_lr_decay is not None:
        groups = layerwise_groups(classifier.trained, classifier.model, classifier.hyperparameters.learning_rate,
                                  stability.layerwise_lr_decay)
        rates = {group["name"]: group["lr"] for group in groups}
        ctx.sink.message(f"Layer-wise learning-rate decay {stability.layerwise_lr_decay:g}: "
                         + ", ".join(f"{name} {lr:.3g}" for name, lr in rates.items()), data={"learning_rates": rates})
        hooks["parameter_groups"] = groups
    if stability.regularizer is not None:
        hooks["objective"] = make_objective(classifier.model, stability.regularizer)
    if stability.early_stopping is not None:
        hooks["early_stopping"] = PatienceStopping(stability.early_stopping)
    return hooks


def train_seed(ctx: TrainContext, task: TaskData, build: Build, *, seed: int, root: Path,
               offsets: tuple[int, int], total_steps: int | None = None, tags: dict[str, Any] | None = None,
               halt_at: int | None = None, label: str = "") -> SeedRun:
    """Run (or resume) one seed: the probe if asked, then fine-tuning up to `halt_at` (None: the end).
    `offsets`: the job-wide step numbers of the probe's and fine-tuning's step 0. Metrics and checkpoints
    count steps job-wide; messages name steps within the phase their `label` says."""
    start, stability, tags = time.perf_counter(), stability_of(ctx), tags or {}
    probe_dir, fine_tune_dir = phase_dirs(root, stability.lp_ft)
    seed_ctx = seed_context(ctx, seed, root, OffsetSink(ctx.sink, offsets[1], tags, total_steps))
    classifier = build_seed_classifier(seed_ctx, task, build)
    probe = dict(NO_PROBE)
    if probe_dir is not None:
        probe = finished_probe(probe_dir) if seed_ctx.resume_from is not None else None
        if probe is None:
            probe_run = run_linear_probe(classifier, seed_ctx, probe_dir,
                                         OffsetSink(ctx.sink, offsets[0], tags, total_steps), label)
            if probe_run.status != "succeeded":  # paused or cancelled within the probe
                return SeedRun(seed, classifier, probe_run, dict(NO_PROBE), offsets[0], time.perf_counter() - start)
            probe = finished_probe(probe_dir)
        label += FINE_TUNE_LABEL
        seed_ctx.sink.message(f"{label}phase 2 of 2: everything {ctx.method} trains, from the probed head",
                              data={"phase": FINE_TUNE})
    tags = {**tags, "phase": FINE_TUNE} if stability.lp_ft else tags
    run = optimize(classifier.run(seed_ctx, halt_at_step=halt_at, tags=tags, label=label,
                                  **fine_tuning_hooks(seed_ctx, classifier)))
    return SeedRun(seed, classifier, run, probe, offsets[1], time.perf_counter() - start)


def saving(save: Save, stability: StabilitySettings) -> Save:
    """The method's save, after R4F's head is folded back into plain weights."""
    if stability.regularizer is None or stability.regularizer.type != "r4f":
        return save

    def save_plain(model, *args) -> None:
        unnormalize_head(model)
        save(model, *args)
    return save_plain


def job_wide(outcome: SeedRun) -> RunResult:
    """The seed's fine-tuning result in job-wide step numbers, the probe's compute included."""
    run, offset = outcome.run, outcome.offset
    return dataclasses.replace(
        run, step=run.step + offset, trained_tokens=outcome.trained_tokens, flops=outcome.flops,
        eval_step=run.eval_step + offset if run.eval_step >= 0 else run.eval_step,
        selected_step=None if run.selected_step is None else run.selected_step + offset,
        stopped_early_at=None if run.stopped_early_at is None else run.stopped_early_at + offset)


def stopped_result(outcome: SeedRun, steps: int, tokens: int = 0, flops: float = 0.0) -> TrainResult:
    """A paused or cancelled job's result, counting the compute of everything before this seed too."""
    return TrainResult(outcome.run.status, steps, tokens + outcome.trained_tokens, flops + outcome.flops,
                       outcome.run.eval_metrics)


def require_validation(ctx: TrainContext, stability: StabilitySettings) -> None:
    if ctx.validation_file is None and stability.needs_validation:
        name = stability.needs_validation[0]
        raise TrainingError(f"stability.{name} scores on validation data and the job has no validation_file.",
                            code="invalid_method_settings", param=f"method.{ctx.method}.stability.{name}")
