"""The one training loop every classification strategy shares.

A strategy only decides which parameters train (`prepare`) and how the result is saved (`save`);
scheduling, evaluation, checkpoints, resume, cancel/pause and accounting live here.

Recipe (Mosbach et al. 2021, "On the Stability of Fine-tuning BERT"): bias-corrected AdamW,
linear warmup then linear decay to 0, per-epoch shuffles drawn from a generator seeded with
seed + epoch (so a resumed run sees exactly the batches an uninterrupted one would).

Accounting: `trained_tokens` counts non-padding tokens of training batches. `flops` estimates
training compute per token as 2·N (forward) + 2·N (backward to activations) + 2·N_trainable
(weight gradients), i.e. (4·N + 2·N_trainable)·T, which is the usual 6·N·T for full fine-tuning
(N = all parameters, embeddings included; attention's sequence-length term and evaluation are
not counted, as in Kaplan et al. 2020).
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.training.artifacts import label_kwargs, write_manifest
from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.checkpoints import latest_complete_checkpoint, load_checkpoint, save_checkpoint
from app.training.data import DatasetError, Example, load_classification_examples, validate_classification_file
from app.training.metrics import classification_metrics

# prepare(model, ctx, new_parameters): `new_parameters` names weights the base checkpoint lacked
# (the head, sometimes a pooler); they start random, so every artifact must carry them.
Prepare = Callable[[torch.nn.Module, TrainContext, set[str]], torch.nn.Module]
# save(model, tokenizer, output_dir, ctx, new_parameters)
Save = Callable[[torch.nn.Module, Any, Path, TrainContext, set[str]], None]

__all__ = ["run_classification", "latest_complete_checkpoint"]


@dataclass
class Batches:
    """Pre-tokenized examples; batches are padded to their own longest row."""

    features: list[dict[str, list[int]]]
    label_ids: list[int]
    pad_id: int

    def __len__(self) -> int:
        return len(self.label_ids)

    def batch(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        rows = [self.features[i] for i in indices]
        width = max(len(r["input_ids"]) for r in rows)
        out: dict[str, torch.Tensor] = {}
        for key in rows[0]:
            pad = self.pad_id if key == "input_ids" else 0
            out[key] = torch.tensor([r[key] + [pad] * (width - len(r[key])) for r in rows], device=device)
        out["labels"] = torch.tensor([self.label_ids[i] for i in indices], device=device)
        return out


def tokenize(tokenizer, examples: list[Example], label_index: dict, max_length: int) -> Batches:
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples] if examples and examples[0].text_pair is not None else None
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    features = [{k: encoded[k][i] for k in keys} for i in range(len(examples))]
    return Batches(features, [label_index[e.label] for e in examples], tokenizer.pad_token_id or 0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _evaluate(model, data: Batches, device, batch_size: int = 64) -> tuple[dict[str, float], torch.Tensor]:
    model.eval()
    logits, losses = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            out = model(**data.batch(list(range(start, min(start + batch_size, len(data)))), device))
            logits.append(out.logits.float().cpu())
            losses.append(out.loss.item() * out.logits.shape[0])
    model.train()
    all_logits = torch.cat(logits)
    metrics = classification_metrics(all_logits.argmax(-1).tolist(), data.label_ids, all_logits.shape[-1])
    return {"eval_loss": sum(losses) / len(data), **metrics}, all_logits


def _guard(loss: torch.Tensor, step: int, lr: float) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"Training loss became {loss.item()} at step {step}; lower learning_rate (now {lr:g}) "
            "or check the data for degenerate examples.", code="nan_loss", param="hyperparameters.learning_rate")


def run_classification(ctx: TrainContext, prepare: Prepare, save: Save) -> TrainResult:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hp = ctx.hyperparameters
    seed_everything(hp.seed)
    train_examples, valid_examples, labels = _load_data(ctx)
    label_index = {label: i for i, label in enumerate(labels)}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(ctx.base_model.path)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        ctx.base_model.path, output_loading_info=True, **label_kwargs(labels))
    limit = min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None) or 10**9)
    if hp.max_length > limit:  # longer inputs would index past the position embeddings
        ctx.sink.message(f"max_length {hp.max_length} exceeds what {ctx.base_model.id} accepts; using {limit}",
                         level="warning")
        hp = dataclasses.replace(hp, max_length=limit)
    new_parameters = set(info["missing_keys"])
    model = prepare(model, ctx, new_parameters).to(device)
    model.train()
    train = tokenize(tokenizer, train_examples, label_index, hp.max_length)
    valid = tokenize(tokenizer, valid_examples, label_index, hp.max_length) if valid_examples else None

    params = [p for p in model.parameters() if p.requires_grad]
    n_total = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in params)
    steps_per_epoch = math.ceil(len(train) / hp.batch_size)
    total_steps = steps_per_epoch * hp.n_epochs
    warmup = int(hp.warmup_ratio * total_steps)
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    state = {"epoch": 0, "batch_in_epoch": 0, "trained_tokens": 0, "flops": 0.0}
    step = 0
    if ctx.resume_from is not None:
        try:
            state = load_checkpoint(ctx.resume_from, model, optimizer, scheduler)
        except (ValueError, OSError, RuntimeError) as exc:
            raise TrainingError(f"Cannot resume from {ctx.resume_from.name}: {exc}. Delete the job's checkpoints "
                                "or start a new job.", code="invalid_checkpoint") from exc
        step = state.pop("step")
        ctx.sink.message(f"Resumed from checkpoint at step {step} (epoch {state['epoch']}, "
                         f"batch {state['batch_in_epoch']})", data={"step": step})
    ctx.sink.message(f"Training {n_trainable:,} of {n_total:,} parameters for {total_steps} steps "
                     f"({hp.n_epochs} epochs × {steps_per_epoch}) on {device.type}",
                     data={"trainable_parameters": n_trainable, "total_parameters": n_total, "total_steps": total_steps})
    log_every = max(1, min(50, steps_per_epoch // 4))
    eval_metrics: dict[str, float] = {}
    eval_step = -1
    window_loss, window_n, window_start, window_samples = 0.0, 0, time.perf_counter(), 0

    def checkpoint() -> None:
        path = save_checkpoint(ctx.checkpoint_dir, step, model, optimizer, scheduler, state)
        ctx.sink.checkpoint(step, path, _finite({"train_loss": last_loss, **eval_metrics}))

    last_loss = float("nan")
    try:
        while state["epoch"] < hp.n_epochs:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(hp.seed + state["epoch"])).tolist()
            for b in range(state["batch_in_epoch"], steps_per_epoch):
                stop = ctx.sink.should_stop()
                if stop == "cancel":
                    return TrainResult("cancelled", step, state["trained_tokens"], state["flops"], eval_metrics)
                if stop == "pause":
                    checkpoint()
                    return TrainResult("paused", step, state["trained_tokens"], state["flops"], eval_metrics)
                batch = train.batch(order[b * hp.batch_size:(b + 1) * hp.batch_size], device)
                loss = model(**batch).loss
                _guard(loss, step + 1, hp.learning_rate)
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                tokens = int(batch["attention_mask"].sum())
                state["batch_in_epoch"] = b + 1
                state["trained_tokens"] += tokens
                state["flops"] += float((4 * n_total + 2 * n_trainable) * tokens)
                last_loss = loss.item()
                window_loss, window_n = window_loss + last_loss, window_n + 1
                window_samples += len(batch["labels"])
                end_of_epoch = b + 1 == steps_per_epoch
                if end_of_epoch:
                    state["epoch"], state["batch_in_epoch"] = state["epoch"] + 1, 0
                if step == 1 or step % log_every == 0 or end_of_epoch:
                    elapsed = time.perf_counter() - window_start
                    ctx.sink.metrics(step, {"train_loss": window_loss / window_n, "learning_rate": scheduler.get_last_lr()[0],
                                            "epoch": step / steps_per_epoch, "samples_per_second": window_samples / max(elapsed, 1e-9),
                                            "trained_tokens": state["trained_tokens"], "flops": state["flops"]})
                    window_loss, window_n, window_start, window_samples = 0.0, 0, time.perf_counter(), 0
                if valid is not None and ((hp.eval_every and step % hp.eval_every == 0) or (not hp.eval_every and end_of_epoch)):
                    eval_metrics, eval_step = _evaluate(model, valid, device)[0], step
                    ctx.sink.metrics(step, dict(eval_metrics))
                if (hp.checkpoint_every and step % hp.checkpoint_every == 0) or end_of_epoch:
                    checkpoint()
        final_metrics = _finite({"train_loss": last_loss})  # NaN when resumed after the last step
        if valid is not None:
            eval_metrics, logits = _evaluate(model, valid, device)
            final_metrics.update(eval_metrics)
            if eval_step != step:  # the final model's scores always reach the metrics stream
                ctx.sink.metrics(step, dict(eval_metrics))
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise TrainingError(f"Out of memory at step {step + 1} on {device.type}; lower batch_size (now "
                            f"{hp.batch_size}) or max_length (now {hp.max_length}).", code="out_of_memory") from exc
    if valid is not None:
        _write_predictions(ctx.output_dir, valid_examples, labels, logits)
    save(model, tokenizer, ctx.output_dir, ctx, new_parameters)
    write_manifest(ctx.output_dir, job_id=ctx.job_id, method=ctx.method, task="sequence_classification",
                   base_model={"id": ctx.base_model.id, "sha256": ctx.base_model.sha256}, labels=labels,
                   metrics=final_metrics, trained_tokens=state["trained_tokens"], flops=state["flops"], steps=step,
                   hyperparameters=dataclasses.asdict(hp), settings=ctx.settings,
                   parameters={"total": n_total, "trainable": n_trainable},
                   created_at=datetime.now(UTC).isoformat())
    return TrainResult("succeeded", step, state["trained_tokens"], state["flops"], final_metrics)


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if math.isfinite(v)}


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator raises a RuntimeError saying so."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("can't allocate memory", "not enough memory", "out of memory"))


def _load_data(ctx: TrainContext) -> tuple[list[Example], list[Example], list]:
    """Training and validation examples plus the sorted label list (the id2label order).

    The API validated both files at submission; this re-checks because a worker may run a job
    whose files changed meaning (e.g. a validation label the training file lacks)."""
    try:
        summary = validate_classification_file(ctx.train_file)
        train = load_classification_examples(ctx.train_file)
    except DatasetError as exc:
        raise TrainingError(f"training_file: {exc}", code="invalid_training_file", param="training_file") from exc
    if ctx.validation_file is None:
        return train, [], summary.labels
    try:
        valid = load_classification_examples(ctx.validation_file)
    except DatasetError as exc:
        raise TrainingError(f"validation_file: {exc}", code="invalid_validation_file",
                            param="validation_file") from exc
    problem = None
    if not valid:
        problem = "has no examples"
    elif unseen := {e.label for e in valid} - set(summary.labels):
        problem = (f"has labels the training file lacks: {sorted(map(str, unseen))[:10]}; the model can only "
                   f"predict {[str(label) for label in summary.labels][:10]}")
    elif any((e.text_pair is not None) != summary.has_pair for e in valid):
        problem = ("has text pairs but the training file does not" if not summary.has_pair
                   else 'lacks "text_pair" on some rows but the training file uses text pairs')
    if problem:
        raise TrainingError(f"validation_file {problem}.", code="invalid_validation_file", param="validation_file")
    return train, valid, summary.labels


def _write_predictions(output_dir: Path, examples: list[Example], labels: list, logits: torch.Tensor) -> None:
    import json

    path = output_dir / "eval" / "predictions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i, (example, row) in enumerate(zip(examples, logits.tolist(), strict=True)):
            predicted = labels[max(range(len(row)), key=row.__getitem__)]
            f.write(json.dumps({"index": i, "label": example.label, "predicted": predicted, "logits": row}) + "\n")
