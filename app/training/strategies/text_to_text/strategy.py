"""Text-to-text fine-tuning (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer"): a seq2seq or decoder LM learns to generate the target; classification rows
become input -> label-name pairs and generations are mapped back to labels. Full fine-tuning, or LoRA
(Hu et al. 2021) through peft with `peft: "lora"`. OpenAI chat rows train decoders on assistant turns.

Artifact: `model/` (save_pretrained + tokenizer) or `adapter/` (PEFT's adapter_config.json +
adapter_model.safetensors), `eval/predictions.jsonl` with a validation file, and manifest.json (kind, task,
labels, base id and sha256). Training runs through the shared engine: checkpoints, pause/resume, "auto".
"""
from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from app.training.artifacts import write_manifest
from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.data import (CHAT, CLASSIFICATION, DatasetError, load_classification_examples,
                               validate_classification_file)
from app.training.engine import Run, epoch_batches, finite, optimize, seed_everything
from app.training.strategies.text_to_text.config import ACCEPTED_TASKS, TextToTextSettings
from app.training.strategies.text_to_text.encoding import GenRows, encode_rows, ensure_pad, pairs_of
from app.training.strategies.text_to_text.generation import generate, match_label, normalize
from app.training.strategies.text_to_text.model import base_kind, model_class, position_limit


@dataclasses.dataclass
class GenTask:
    """The job's rows: `task` the training file's type, `labels` the class names when it held classification
    rows (generations map back to them), else []."""

    task: str
    train: list
    valid: list
    labels: list[str]


def read_files(ctx: TrainContext) -> GenTask:
    def read(path: Path, param: str):
        try:
            summary = validate_classification_file(path)
            return summary, load_classification_examples(path, summary.task)
        except DatasetError as exc:
            raise TrainingError(f"{param}: {exc}", code=f"invalid_{param}", param=param) from exc
    summary, train = read(ctx.train_file, "training_file")
    if summary.task not in ACCEPTED_TASKS or summary.has_pair:
        raise TrainingError(f"text_to_text cannot learn from {summary.task} rows{' with text pairs' * summary.has_pair}"
                            "; give text-to-text, chat or single-label classification rows.",
                            code="unsupported_task_type", param="training_file")
    valid = []
    if ctx.validation_file is not None:
        valid_summary, valid = read(ctx.validation_file, "validation_file")
        if valid_summary.task != summary.task:
            raise TrainingError(f"validation_file holds {valid_summary.task} rows but the training file "
                                f"{summary.task} rows.", code="invalid_validation_file", param="validation_file")
    labels = [str(label) for label in summary.labels] if summary.task == CLASSIFICATION else []
    return GenTask(summary.task, train, valid, labels)


def _checked(rows: GenRows, param: str) -> GenRows:
    """A row whose learned tokens were all truncated away would give a loss over nothing."""
    for i, features in enumerate(rows.features):
        if all(label < 0 for label in features["labels"]):
            raise TrainingError(f"{param} row {i + 1}: nothing is left to learn within max_length (its assistant "
                                "turns or target are cut off); raise hyperparameters.max_length or shorten the row.",
                                code=f"invalid_{param}", param=param)
    return rows


def _prepare(model, settings: TextToTextSettings, kind: str, ctx: TrainContext):
    if settings.peft == "none":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    from peft import TaskType, get_peft_model

    config = settings.peft_config(settings.target_modules,
                                  task_type=TaskType.SEQ_2_SEQ_LM if kind == "seq2seq" else TaskType.CAUSAL_LM)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # peft: target modules not found, or no default for this architecture
        raise TrainingError(f"LoRA cannot wrap {ctx.base_model.id}: {exc}", code="invalid_method_settings",
                            param="method.text_to_text.target_modules") from exc


def eval_prompts(task: GenTask) -> tuple[list, list[str]]:
    """(what the model reads, what it should write) per validation row: the input and target, or a
    conversation up to its last assistant turn and that turn's content."""
    if task.task != CHAT:
        pairs = pairs_of(task.valid, task.task)
        return [p.input for p in pairs], [p.target for p in pairs]
    prompts, targets = [], []
    for example in task.valid:
        last = max(i for i, m in enumerate(example.label) if m["role"] == "assistant")
        prompts.append(example.label[:last])
        targets.append(example.label[last]["content"])
    return prompts, targets


@dataclasses.dataclass
class Evaluation:
    metrics: dict[str, float]
    rows: list[dict[str, Any]]  # per validation row: target, generated text (and labels)


def evaluate(model, tokenizer, kind: str, task: GenTask, rows: GenRows, settings: TextToTextSettings,
             max_length: int) -> Evaluation:
    """eval_loss (teacher-forced) and eval_accuracy: exact match of the greedy generation (after normalize)
    with the target (chat rows: the last assistant turn), or of the label it names; eval_unmatched counts
    generations naming no label."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, losses = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(rows), 32):
            indices = list(range(start, min(start + 32, len(rows))))
            losses += model(**rows.batch(indices, device)).loss.item() * len(indices)
            total += len(indices)
    model.train(was_training)
    metrics = {"eval_loss": losses / max(total, 1)}
    prompts, targets = eval_prompts(task)
    texts = generate(model, tokenizer, kind, prompts, max_length, settings.max_new_tokens)
    out = []
    for target, text in zip(targets, texts, strict=True):
        row = {"target": target, "generated": text}
        if task.labels:
            row["predicted"] = match_label(text, task.labels)
            row["correct"] = row["predicted"] == target
        else:
            row["correct"] = normalize(text) == normalize(target)
        out.append(row)
    metrics["eval_accuracy"] = sum(r["correct"] for r in out) / max(len(out), 1)
    if task.labels:
        metrics["eval_unmatched"] = float(sum(r["predicted"] is None for r in out))
    return Evaluation(metrics, out)


def train(ctx: TrainContext) -> TrainResult:
    from transformers import AutoTokenizer

    settings = ctx.settings_as(TextToTextSettings)
    kind = base_kind(ctx.base_model.path, ctx.base_model.id)
    task = read_files(ctx)
    if task.task == CHAT and kind != "decoder":
        raise TrainingError(f"Chat rows train decoder models only, and {ctx.base_model.id} is a {kind} model.",
                            code="invalid_model_kind", param="model")
    ctx.sink.message(f"Task: text-to-text on a {kind} model from {task.task} rows ({len(task.train)} examples"
                     + (f", {len(task.labels)} labels generated as text" if task.labels else "") + ")",
                     data={"task": task.task, "kind": kind, "labels": task.labels, "n_examples": len(task.train)})
    hp = ctx.hyperparameters
    tokenizer = ensure_pad(AutoTokenizer.from_pretrained(ctx.base_model.path))
    seed_everything(hp.seed)
    model = model_class(kind).from_pretrained(ctx.base_model.path)
    if hp.max_length > (limit := position_limit(model, tokenizer)):
        ctx.sink.message(f"max_length {hp.max_length} exceeds what {ctx.base_model.id} accepts; using {limit}",
                         level="warn")
        hp = dataclasses.replace(hp, max_length=limit)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = _prepare(model, settings, kind, ctx).to(device)
    max_target = min(settings.max_target_length, hp.max_length)
    train_rows = _checked(encode_rows(tokenizer, kind, task.task, task.train, hp.max_length, max_target),
                          "training_file")
    valid_rows = _checked(encode_rows(tokenizer, kind, task.task, task.valid, hp.max_length, max_target),
                          "validation_file") if task.valid else None
    rows_of = epoch_batches(len(train_rows), hp)
    scored = (lambda: evaluate(model, tokenizer, kind, task, valid_rows, settings, hp.max_length).metrics) \
        if valid_rows is not None else None
    run = optimize(Run(model=model, hyperparameters=hp, steps_per_epoch=math.ceil(len(train_rows) / hp.batch_size),
                       batch=lambda epoch, b: train_rows.batch(rows_of(epoch, b), device), sink=ctx.sink,
                       checkpoint_dir=ctx.checkpoint_dir, resume_from=ctx.resume_from, evaluate=scored))
    if run.status != "succeeded":
        return TrainResult(run.status, run.step, run.trained_tokens, run.flops, run.eval_metrics)
    metrics = finite({"train_loss": run.last_loss})
    if valid_rows is not None:
        final = evaluate(model, tokenizer, kind, task, valid_rows, settings, hp.max_length)
        metrics.update(final.metrics)
        if run.selected_step is not None:
            metrics["selected_step"] = run.selected_step
        elif run.eval_step != run.step:
            ctx.sink.metrics(run.step, dict(final.metrics))
        _write_predictions(ctx.output_dir, final.rows)
        if task.labels:
            unmatched = int(final.metrics["eval_unmatched"])
            ctx.sink.message(f"{unmatched} of {len(final.rows)} validation generations matched no label",
                             level="warn" if unmatched else "info", data={"unmatched": unmatched,
                                                                          "generations": len(final.rows)})
    _save(model, tokenizer, settings, ctx)
    chat = {"system": shared_system_prompt(task.train)} if task.task == CHAT else {}
    write_manifest(ctx.output_dir, job_id=ctx.job_id, method=ctx.method, task=CHAT if task.task == CHAT else
                   "text_to_text", kind=kind,
                   source_task=task.task, labels=task.labels, peft=settings.peft,
                   base_model={"id": ctx.base_model.id, "sha256": ctx.base_model.sha256}, metrics=metrics,
                   trained_tokens=run.trained_tokens, flops=run.flops, steps=run.step,
                   hyperparameters=dataclasses.asdict(hp), settings=ctx.settings_record(),
                   parameters={"total": run.total_parameters, "trainable": run.trainable_parameters},
                   generation={"max_new_tokens": settings.max_new_tokens, "max_length": hp.max_length, **chat},
                   created_at=datetime.now(UTC).isoformat())
    return TrainResult("succeeded", run.step, run.trained_tokens, run.flops, metrics)


def shared_system_prompt(examples: list) -> str | None:
    """The system message every training conversation opens with, if they all share one: predictions put it
    before the user's text, so the model reads what it was trained to read."""
    first = {e.label[0]["content"] if e.label[0]["role"] == "system" else None for e in examples}
    return first.pop() if len(first) == 1 else None


def _save(model, tokenizer, settings: TextToTextSettings, ctx: TrainContext) -> None:
    if settings.peft == "lora":
        from app.training.model_card import publish_adapter_config

        model.save_pretrained(ctx.output_dir / "adapter")
        publish_adapter_config(ctx.output_dir / "adapter", ctx)
        return
    model.save_pretrained(ctx.output_dir / "model")
    tokenizer.save_pretrained(ctx.output_dir / "model")


def _write_predictions(output_dir: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    path = output_dir / "eval" / "predictions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"index": i, **row}) + "\n" for i, row in enumerate(rows)))
