"""Adaptive pretraining then (optionally) task fine-tuning, in one job (Gururangan et al. 2020).

Phases run in order: DAPT (the corpus file, streamed from disk in packed blocks), TAPT (the
training file's texts), then the task method of `then` on the adapted encoder. A finished phase
leaves its encoder and a `phase.json` in the job's checkpoint dir, so a resumed job skips it; an
unfinished one resumes from its own checkpoints. Step numbers continue across phases, so events
and checkpoints never collide.

Artifact: `encoder/` (the adapted encoder with its MLM head, `save_pretrained` + tokenizer),
plus the task method's own artifact when `then` is given; `manifest.json` records every phase's
held-out MLM loss/accuracy before and after. With `adapter`, the phases train a MAD-X language
adapter over the frozen base instead (language_adapter.py) and the artifact is its `bottleneck/`.
With `peft: "lora"` they train a LoRA adapter (lora_phase.py) and `encoder/` is the base's id plus
that adapter (app.training.adapted_base), merged into the base wherever it is loaded.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from app.fsio import directory_sha256, fsync_tree, replace_dir
from app.training.artifacts import write_stage_manifest
from app.training.base import BaseModelRef, OffsetSink, ProducedModel, TrainContext, TrainingError, TrainResult
from app.training.checkpoints import latest_complete_checkpoint
from app.training.data import DatasetError, load_classification_examples
from app.training.distributed import adopt_rank_zero_dir
from app.training.mlm import MlmPhase, run_mlm
from app.training.registry import run_strategy
from app.training.strategies.adaptive.config import AdaptiveSettings, adapted_model_id
from app.training.strategies.adaptive.language_adapter import language_adapter_hooks
from app.training.strategies.adaptive.lora_phase import lora_hooks

PHASE_DONE = "phase.json"


def _tapt_texts(ctx: TrainContext) -> list[str]:
    """The training file's texts, labels ignored (the training file is loaded whole in any case)."""
    try:
        return [e.text if e.text_pair is None else f"{e.text} {e.text_pair}"
                for e in load_classification_examples(ctx.train_file)]
    except DatasetError as exc:
        raise TrainingError(f"training_file: {exc}", code="invalid_corpus", param="training_file") from exc


def _mlm_phase(ctx: TrainContext, name: str, encoder: Path, settings: AdaptiveSettings, offset: int,
               hooks: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) one MLM phase; returns its record, or {"status": "paused"|"cancelled", …}.
    `hooks`: MlmPhase's prepare/save when the phase trains a language adapter, not the encoder."""
    done_dir = ctx.checkpoint_dir / f"{name}-encoder"
    if (done_dir / PHASE_DONE).exists():
        record = json.loads((done_dir / PHASE_DONE).read_text())
        ctx.sink.message(f"{name.upper()}: already finished in an earlier attempt; reusing its encoder")
        return record
    staging = done_dir.with_name(done_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    checkpoints = ctx.checkpoint_dir / name
    corpus = {"texts": [], "corpus_path": ctx.input_files["corpus_file"]} if name == "dapt" else \
        {"texts": _tapt_texts(ctx)}  # DAPT streams its corpus from disk (app.training.mlm_stream)
    result = run_mlm(MlmPhase(**corpus, masking=settings.mlm, hyperparameters=ctx.hyperparameters,
                              base_path=encoder, output_dir=staging, checkpoint_dir=checkpoints,
                              sink=OffsetSink(ctx.sink, offset), resume_from=latest_complete_checkpoint(checkpoints),
                              label=f"{name.upper()}: ", head_warmup=settings.head_warmup,
                              encoder_lr_ratio=settings.encoder_lr_ratio, **(hooks or {})))
    run = result.run
    record = {"phase": name, "status": run.status, "steps": run.step, "trained_tokens": run.trained_tokens,
              "flops": run.flops, "before": result.before, "after": result.after}
    if run.status != "succeeded":
        return record
    (staging / PHASE_DONE).write_text(json.dumps(record))
    fsync_tree(staging)
    replace_dir(staging, done_dir)  # the phase counts as done only once its encoder is whole
    adopt_rank_zero_dir(ctx, done_dir)  # on several processes only rank 0's save_pretrained wrote the weights
    ctx.sink.message(f"{name.upper()}: held-out MLM loss {result.before.get('mlm_loss', float('nan')):.4f} → "
                     f"{result.after.get('mlm_loss', float('nan')):.4f}, masked-token accuracy "
                     f"{result.before.get('mlm_accuracy', 0):.3f} → {result.after.get('mlm_accuracy', 0):.3f}",
                     data={"phase": name, "before": result.before, "after": result.after})
    return record


def _task_context(ctx: TrainContext, settings: AdaptiveSettings, encoder: Path, offset: int) -> TrainContext:
    then = settings.then
    if then.hyperparameters is None:  # the job API resolves nested methods at submission
        raise TypeError("adaptive.then reached the strategy unresolved; pass it through resolve_method")
    checkpoints = ctx.checkpoint_dir / "task"
    return dataclasses.replace(
        ctx, method=then.type, settings=then.settings, hyperparameters=then.hyperparameters,
        checkpoint_dir=checkpoints, resume_from=latest_complete_checkpoint(checkpoints),
        base_model=BaseModelRef(id=adapted_model_id(ctx.job_id), path=encoder,
                                sha256=directory_sha256(encoder)),
        sink=OffsetSink(ctx.sink, offset))


def train(ctx: TrainContext) -> TrainResult:
    settings = ctx.settings_as(AdaptiveSettings)
    phases = (["dapt"] if settings.corpus_file else []) + (["tapt"] if settings.tapt else [])
    encoder, records, adapter = ctx.base_model.path, [], None
    for name in phases:
        hooks = (language_adapter_hooks(ctx, settings.adapter, adapter) if settings.adapter else
                 lora_hooks(ctx, settings.lora, adapter) if settings.peft == "lora" else None)
        record = _mlm_phase(ctx, name, encoder, settings, offset=sum(r["steps"] for r in records), hooks=hooks)
        records.append(record)
        if record["status"] != "succeeded":
            return _result(record["status"], records, None)
        if hooks:  # the base stays as it is; the next phase continues this phase's adapter
            adapter = ctx.checkpoint_dir / f"{name}-encoder"
        else:
            encoder = ctx.checkpoint_dir / f"{name}-encoder"
    if settings.adapter:
        return _language_adapter_result(ctx, settings, records, adapter)
    shipped = ctx.output_dir / "encoder"  # with peft: the base's id + the adapter (app.training.adapted_base)
    shutil.copytree(adapter if settings.peft else encoder, shipped, ignore=shutil.ignore_patterns(PHASE_DONE))
    task = None
    if settings.then:  # on the encoder as it ships and registers: the task artifact names that hash as its base
        task = run_strategy(_task_context(ctx, settings, shipped, offset=sum(r["steps"] for r in records)))
        if task.status != "succeeded":
            shutil.rmtree(ctx.output_dir / "encoder", ignore_errors=True)
            return _result(task.status, records, task)
    result = dataclasses.replace(_result("succeeded", records, task),
                                 produced_model=ProducedModel(id=adapted_model_id(ctx.job_id), path="encoder"))
    _write_manifest(ctx, settings, records, result)
    return result


def _language_adapter_result(ctx: TrainContext, settings: AdaptiveSettings, records: list[dict[str, Any]],
                             phase_dir: Path) -> TrainResult:
    """The last phase's `bottleneck/` is the artifact: no encoder, no registered model (MAD-X)."""
    shutil.copytree(phase_dir / "bottleneck", ctx.output_dir / "bottleneck")
    result = _result("succeeded", records, None)
    _write_manifest(ctx, settings, records, result)
    ctx.sink.message(f'Language adapter trained (bottleneck/); stack it under a task adapter with {{"type": "adapter", '
                     f'"adapter": {{"stack": ["{ctx.job_id}"]}}}}', data={"stack": [ctx.job_id]})
    return result


def _result(status: str, records: list[dict[str, Any]], task: TrainResult | None) -> TrainResult:
    metrics = {f"{r['phase']}_{k}": v for r in records for k, v in r.get("after", {}).items()}
    return TrainResult(status, sum(r["steps"] for r in records) + (task.steps if task else 0),
                       sum(r["trained_tokens"] for r in records) + (task.trained_tokens if task else 0),
                       sum(r["flops"] for r in records) + (task.flops if task else 0.0),
                       {**metrics, **(task.metrics if task else {})})


def _write_manifest(ctx: TrainContext, settings: AdaptiveSettings, records: list[dict[str, Any]],
                    result: TrainResult) -> None:
    """The task method's manifest (if any) gains the phases; otherwise the encoder gets its own."""
    adaptive = {"base_model": {"id": ctx.base_model.id, "sha256": ctx.base_model.sha256},
                "phases": [{k: r[k] for k in ("phase", "steps", "trained_tokens", "before", "after")} for r in records],
                "mlm": settings.mlm.model_dump(mode="json")}
    write_stage_manifest(ctx, result, "masked_lm", settings.then.type if settings.then else None, adaptive=adaptive)
