"""Multi-task pre-finetuning then (optionally) a task method, in one job (Aghajanyan et al. 2021, Muppet).

Phase 1 trains the shared encoder and one head per task on the mixture (mixture.py) through the
engine (checkpoints, pause/resume, best-of-validation); once finished, its encoder and heads and a
`phase.json` sit in the job's checkpoint dir, so a resumed job skips it. Phase 2, when `then` is given,
runs that task method on the job's training_file over the encoder as it ships (its checkpoints in
`task/`, step numbers continuing). The encoder is registered as `multitask:<job>` like adaptive's.

Artifact: `encoder/` (save_pretrained + tokenizer), `heads/heads.safetensors` + `heads/tasks.json` (each
task's type and labels, in head order), and the task method's files when `then` is given; the manifest records
every task (size, sampling probability, final metrics).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from app.fsio import directory_sha256, fsync_tree, replace_dir
from app.training.adapted_base import load_pretrained
from app.training.artifacts import write_stage_manifest
from app.training.base import BaseModelRef, OffsetSink, ProducedModel, TrainContext, TrainResult
from app.training.checkpoints import latest_complete_checkpoint
from app.training.engine import Run, optimize, seed_everything
from app.training.registry import run_strategy
from app.training.strategies.multitask.config import MultitaskSettings, multitask_model_id
from app.training.data import REGRESSION
from app.training.distributed import adopt_rank_zero_dir
from app.training.strategies.multitask.mixture import (PRIMARY, MixtureObjective, MultitaskModel, Task, evaluate,
                                                       load_task, mixture_batches, sampling_probabilities)

PHASE_DONE = "phase.json"
TRAINING_FILE_TASK = "training_file"


def _task_files(ctx: TrainContext, settings: MultitaskSettings) -> list[tuple[str, tuple[Path, str], tuple[Path, str] | None]]:
    """(name, (training path, param), (validation path, param) | None) per task; without `then` the job's own
    training file joins as a task unless one of the tasks names that very file."""
    where = f"method.{ctx.method}.tasks"
    out = []
    for i, task in enumerate(settings.tasks):
        valid = f"tasks.{i}.validation_file"
        out.append((task.name, (ctx.input_files[f"tasks.{i}.training_file"], f"{where}.{i}.training_file"),
                    (ctx.input_files[valid], f"{where}.{i}.validation_file") if valid in ctx.input_files else None))
    listed = {Path(train[0]).resolve() for _, train, _ in out}
    if settings.then is None and Path(ctx.train_file).resolve() not in listed:
        validation = (ctx.validation_file, "validation_file") if ctx.validation_file else None
        out.append((TRAINING_FILE_TASK, (ctx.train_file, "training_file"), validation))
    return out


def _pretrain(ctx: TrainContext, settings: MultitaskSettings) -> dict[str, Any]:
    """Run (or resume, or reuse) the mixture phase; returns its record with status."""
    from transformers import AutoModel, AutoTokenizer

    done_dir = ctx.checkpoint_dir / "multitask-encoder"
    if (done_dir / PHASE_DONE).exists():
        ctx.sink.message("Multitask: already finished in an earlier attempt; reusing its encoder")
        return json.loads((done_dir / PHASE_DONE).read_text())
    hp = ctx.hyperparameters
    tokenizer = AutoTokenizer.from_pretrained(ctx.base_model.path)
    tasks = [load_task(name, train, valid, tokenizer, hp.max_length) for name, train, valid in _task_files(ctx, settings)]
    probabilities = sampling_probabilities([len(t.train) for t in tasks], settings.sampling, settings.temperature)
    ctx.sink.message("Multitask: " + "; ".join(f"{t.name} {len(t.train)} rows of {_shape(t)}, p={p:.3f}"
                                               for t, p in zip(tasks, probabilities)),
                     data={"tasks": [{"name": t.name, "type": t.type, "n_train": len(t.train), "n_valid": len(t.valid),
                                      "labels": t.labels, "probability": p} for t, p in zip(tasks, probabilities)]})
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seed_everything(hp.seed)
    model = MultitaskModel(load_pretrained(AutoModel, ctx.base_model.path), tasks).to(device)
    pad_id = tokenizer.pad_token_id or 0
    checkpoints = ctx.checkpoint_dir / "multitask"
    scored = any(t.valid for t in tasks)
    run = optimize(Run(
        model=model, hyperparameters=hp, steps_per_epoch=max(1, -(-sum(len(t.train) for t in tasks) // hp.batch_size)),
        batch=mixture_batches(tasks, probabilities, hp.batch_size, hp.seed, pad_id, device), sink=ctx.sink,
        checkpoint_dir=checkpoints, resume_from=latest_complete_checkpoint(checkpoints),
        evaluate=(lambda: evaluate(model, tasks, pad_id, device)) if scored else None, label="Multitask: ",
        objective=MixtureObjective(tasks, settings.loss_scaling)))
    record = {"status": run.status, "steps": run.step, "trained_tokens": run.trained_tokens, "flops": run.flops}
    if run.status != "succeeded":
        return record
    metrics = evaluate(model, tasks, pad_id, device) if scored else {}
    record |= {"metrics": metrics, "selected_step": run.selected_step,
               "tasks": [{"name": t.name, "type": t.type, "n_train": len(t.train), "n_valid": len(t.valid),
                          "labels": t.labels,
                          "probability": p, **{k.removeprefix(f"eval_{t.name}_"): v for k, v in metrics.items()
                                               if k.startswith(f"eval_{t.name}_")}}
                         for t, p in zip(tasks, probabilities)]}
    _save_phase(ctx, model, tokenizer, tasks, record, done_dir)
    for task, kind in zip(record["tasks"], tasks):
        if (key := PRIMARY[kind.type]) in task:
            ctx.sink.message(f"Multitask: {task['name']} validation {key} {task[key]:.3f}, loss {task['loss']:.4f}",
                             data={"task": task["name"], key: task[key]})
    return record


def _shape(task: Task) -> str:
    return "regression" if task.type == REGRESSION else f"{task.type}, {len(task.labels)} labels"


def _save_phase(ctx: TrainContext, model: MultitaskModel, tokenizer, tasks: list[Task], record: dict[str, Any],
                done_dir: Path) -> None:
    """encoder/ and heads/ with phase.json, written beside and renamed into place (the phase is done once whole)."""
    staging = done_dir.with_name(done_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.encoder.save_pretrained(staging / "encoder")
    tokenizer.save_pretrained(staging / "encoder")
    (staging / "heads").mkdir()
    save_file({f"{name}.{k}": v.detach().cpu().contiguous() for name, head in model.heads.items()
               for k, v in head.state_dict().items()}, staging / "heads" / "heads.safetensors")
    (staging / "heads" / "tasks.json").write_text(json.dumps(
        [{"name": t.name, "type": t.type, "labels": t.labels} for t in tasks], indent=2, default=str))
    (staging / PHASE_DONE).write_text(json.dumps(record, default=str))
    fsync_tree(staging)
    replace_dir(staging, done_dir)
    adopt_rank_zero_dir(ctx, done_dir)  # on several processes only rank 0's save_pretrained wrote the encoder


def _task_context(ctx: TrainContext, settings: MultitaskSettings, encoder: Path, offset: int) -> TrainContext:
    """The `then` method's context: the job's files over the encoder as it ships (and registers)."""
    then = settings.then
    checkpoints = ctx.checkpoint_dir / "task"
    return dataclasses.replace(
        ctx, method=then.type, settings=then.settings, hyperparameters=then.hyperparameters,
        checkpoint_dir=checkpoints, resume_from=latest_complete_checkpoint(checkpoints), input_files={},
        base_model=BaseModelRef(id=multitask_model_id(ctx.job_id), path=encoder, sha256=directory_sha256(encoder)),
        sink=OffsetSink(ctx.sink, offset))


def train(ctx: TrainContext) -> TrainResult:
    settings = ctx.settings_as(MultitaskSettings)
    record = _pretrain(ctx, settings)
    phase = TrainResult(record["status"], record["steps"], record["trained_tokens"], record["flops"],
                        {f"multitask_{k}": v for k, v in record.get("metrics", {}).items()})
    if record["status"] != "succeeded":
        return phase
    done_dir = ctx.checkpoint_dir / "multitask-encoder"
    for part in ("encoder", "heads"):
        shutil.copytree(done_dir / part, ctx.output_dir / part)
    task = None
    if settings.then is not None:
        task = run_strategy(_task_context(ctx, settings, ctx.output_dir / "encoder", offset=record["steps"]))
        if task.status != "succeeded":
            for part in ("encoder", "heads"):
                shutil.rmtree(ctx.output_dir / part, ignore_errors=True)
            return dataclasses.replace(task, steps=phase.steps + task.steps)
    result = TrainResult("succeeded", phase.steps + (task.steps if task else 0),
                         phase.trained_tokens + (task.trained_tokens if task else 0),
                         phase.flops + (task.flops if task else 0.0), {**phase.metrics, **(task.metrics if task else {})},
                         produced_model=ProducedModel(id=multitask_model_id(ctx.job_id), path="encoder"))
    _write_manifest(ctx, settings, record, result)
    return result


def _write_manifest(ctx: TrainContext, settings: MultitaskSettings, record: dict[str, Any], result: TrainResult) -> None:
    """The task method's manifest (if any) gains the mixture's record; otherwise the encoder gets its own."""
    multitask = {"base_model": {"id": ctx.base_model.id, "sha256": ctx.base_model.sha256}, "tasks": record["tasks"],
                 "sampling": settings.sampling, "temperature": settings.temperature,
                 "loss_scaling": settings.loss_scaling, "steps": record["steps"],
                 "selected_step": record.get("selected_step"), "model": multitask_model_id(ctx.job_id)}
    write_stage_manifest(ctx, result, "multitask", settings.then.type if settings.then else None, multitask=multitask)
