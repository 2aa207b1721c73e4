"""The optimisation loop every strategy shares, whatever it trains on.

AdamW with linear warmup and decay over the trainable parameters; cancel/pause polled every step;
metrics from step 1; periodic checkpoints (trainable weights, optimizer, scheduler, RNG and data
position) and exact resume from them. The caller owns the model and the data: `batch(epoch, i)`
must return the same batch for the same arguments, which is what makes a resumed run reach the
weights an uninterrupted one reaches. Classification jobs and MLM phases both run through here.

Recipe (Mosbach et al. 2021, "On the Stability of Fine-tuning BERT"): bias-corrected AdamW,
linear warmup then linear (or cosine, or no) decay, gradients clipped to a global norm (1.0, as the
Hugging Face Trainer does). With an evaluation function and `select_best`, the best-scoring
evaluated weights are kept (see app.training.best) and restored at the end.

Hooks, all off by default (app.training.stability sets them): `parameter_groups` (e.g. layer-wise
learning rates), an `objective` replacing `model(**batch).loss` (a regulariser, with state the
checkpoints carry), `early_stopping` (stops once evaluations stop improving; the best weights are kept
and restored, scored its way), `halt_at_step` (checkpoint and stop there: a seed paused at its discard
point) and `tags` (recorded in every checkpoint's state and checked on resume, e.g. the LP-FT phase).

On GPUs AdamW is the fused kernel. Under torchrun each rank trains its share of every batch and the
gradients are averaged once per step (app.training.distributed), so steps match a one-process run; with
`sharding` "fsdp" each rank holds a shard of the model and AdamW state, and checkpoints and the best weights
are still written whole (app.training.sharding).

Devices (app.training.precision): `precision` autocasts forward and backward to bf16/fp16 (fp16 with loss
scaling), `gradient_accumulation_steps` runs each step's batch as that many micro-batches whose gradients
add up to the whole batch's (each micro-batch's loss weighted by its share of the rows), and
`gradient_checkpointing` recomputes activations in backward. Steps, checkpoints and resume count optimizer
steps, so a job's schedule does not depend on how its batches are split.

Accounting: `trained_tokens` counts non-padding tokens of training batches. `flops` estimates
training compute as (4·N + 2·N_trainable)·T, the usual 6·N·T for full fine-tuning (N = all parameters,
embeddings included; an encoder-decoder's two stacks each over their own tokens; attention's
sequence-length term and evaluation not counted, as in Kaplan et al. 2020): app.training.flops.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from app.training.base import ProgressSink, TrainingError
from app.training.config import Hyperparameters
from app.training.batching import length_grouped_order, loss_units, split_batch
from app.training.best import BestCheckpoint, score, standard_error
from app.training.flops import FlopCounter
from app.training.checkpoints import load_checkpoint, load_extra_state, save_checkpoint
from app.training.distributed import all_reduce_gradients, all_reduce_loss, broadcast_stop, rank_and_world, shard
from app.training.sharding import shard as shard_model
from app.training.sharding_rules import FSDP
from app.training.precision import Precision, enable_gradient_checkpointing, resolve_precision

Batch = dict[str, torch.Tensor]


class Objective(Protocol):
    """The training loss of a batch when it is not the model's own (e.g. the task loss plus a regulariser)."""

    flops_factor: float  # training compute per step as a multiple of one forward and backward

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """What is minimised on `batch` (its value is what train_loss reports)."""

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after optimizer step `step` (1-based) of `total_steps`."""

    def metrics(self) -> dict[str, float]:
        """Values to report with train_loss (means since the last call)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors a checkpoint must carry for an exact resume (may be empty)."""

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


class EarlyStopping(Protocol):
    """Stops a run whose evaluations stopped improving; its counters live in the checkpoints' state."""

    state: dict[str, Any]

    def score(self, metrics: dict[str, float]) -> tuple[float, ...]:
        """Higher is better; the best evaluated weights are chosen by this too."""

    def should_stop(self, step: int, metrics: dict[str, float]) -> bool:
        """After the evaluation at `step` scored `metrics`: stop now?"""

    def reason(self, step: int) -> tuple[str, dict[str, Any]]:
        """Why training stopped at `step`: the event's message and data."""


@dataclass
class Run:
    """What to optimise, and how to report it."""

    model: torch.nn.Module  # on its device; parameters with requires_grad are trained
    hyperparameters: Hyperparameters
    steps_per_epoch: int
    batch: Callable[[int, int], Batch]  # (epoch, batch index in epoch) -> inputs incl. labels
    sink: ProgressSink
    checkpoint_dir: Path
    resume_from: Path | None = None
    evaluate: Callable[[], dict[str, float]] | None = None  # eval metrics, at eval_every / epoch ends
    label: str = ""  # prefixes this run's messages, e.g. "DAPT: " in a multi-phase job
    parameter_groups: list[dict[str, Any]] | None = None  # AdamW groups (own "lr"s); None: one group
    objective: Objective | None = None  # None: model(**batch).loss
    early_stopping: EarlyStopping | None = None  # needs `evaluate`
    halt_at_step: int | None = None  # checkpoint and return "halted" once this many steps are done
    tags: dict[str, Any] = field(default_factory=dict)  # saved in each checkpoint's state, checked on resume
    sharding: Literal["none", "fsdp"] = "none"  # fsdp: the model sharded over the ranks (app.training.sharding)


@dataclass
class RunResult:
    status: Literal["succeeded", "cancelled", "paused", "halted"]
    step: int
    trained_tokens: int
    flops: float
    last_loss: float  # NaN when resumed after the last step
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_step: int = -1  # the step eval_metrics belong to
    selected_step: int | None = None  # the step whose weights the model holds at the end, when not the last
    total_parameters: int = 0
    trainable_parameters: int = 0
    stopped_early_at: int | None = None  # the step early stopping ended the run at


def seed_everything(seed: int) -> None:
    """Before a model is built: new heads and dropout draw from these generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_batches(n_rows: int, hp: Hyperparameters, lengths: list[int] | None = None) -> Callable[[int, int], list[int]]:
    """(epoch, batch index) -> row indices: a fixed shuffle per epoch (seeded with seed + epoch),
    so a resumed run replays exactly the batches an uninterrupted one would. Given the rows' token
    `lengths`, rows of similar length share batches (app.training.batching.length_grouping decides)."""

    @lru_cache(maxsize=1)
    def order(epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(hp.seed + epoch)
        if lengths is not None:
            return length_grouped_order(lengths, hp.batch_size, generator)
        return torch.randperm(n_rows, generator=generator).tolist()

    return lambda epoch, b: order(epoch)[b * hp.batch_size:(b + 1) * hp.batch_size]


def batch_seed(seed: int, epoch: int, b: int) -> int:
    """The seed of one batch's random masks: resumed runs mask exactly the same tokens."""
    return (seed * 1_000_003 + epoch * 10_007 + b) % 2**63


def finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if math.isfinite(v)}


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator raises a RuntimeError saying so."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("can't allocate memory", "not enough memory", "out of memory"))


def _guard(loss: float, step: int, lr: float) -> None:
    if not math.isfinite(loss):
        raise TrainingError(
            f"Training loss became {loss} at step {step}; lower learning_rate (now {lr:g}) "
            "or check the data for degenerate examples.", code="nan_loss", param="hyperparameters.learning_rate")


def _schedule(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """The LR factor at step s: linear warm-up over `warmup` steps, then `kind` decay to the end."""
    def decay(s: int) -> float:
        progress = (s - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if kind == "constant":
            return 1.0
        return max(0.0, 1.0 - progress)
    return lambda s: (s + 1) / max(1, warmup) if s < warmup else decay(s)


def _backward(model: torch.nn.Module, objective: Objective | None, batch: Batch, parts: int, precision: Precision,
              step: int, lr: float, rank: int = 0, world: int = 1) -> float:
    """Forward and backward over this rank's share of `batch` (all of it in one process) as `parts`
    micro-batches (gradient accumulation); each micro-batch's loss is weighted by its share of the batch's
    loss units (rows, or scored tokens for per-token labels: `loss_units`) × world size (the all-reduce
    averages), so the summed gradient is the whole batch's mean-loss gradient. Returns this rank's share of
    the batch's loss (the batch's loss in one process)."""
    total = 0.0
    mine, has_rows = shard(batch, rank, world) if world > 1 else (batch, True)
    micro_batches = split_batch(mine, parts)
    weighted = len(micro_batches) > 1 or world > 1
    units = max(1, loss_units(batch)) if weighted else 1  # counted only where shares are weighted
    for micro in micro_batches:
        with precision.autocast():
            loss = model(**micro).loss if objective is None else objective.loss(model, micro)
        if world == 1:
            _guard(loss.item(), step, lr)
        if weighted:
            loss = loss * (loss_units(micro) / units * world if has_rows else 0.0)
        (precision.scaler.scale(loss) if precision.scaler is not None else loss).backward()
        total += loss.item()
    return total


def _optimizer_step(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], max_grad_norm: float | None,
                    precision: Precision) -> None:
    """Clip (on unscaled gradients) and step; with fp16 loss scaling a step whose gradients overflowed is
    skipped and the scale lowered (GradScaler)."""
    scaler = precision.scaler
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def optimize(run: Run) -> RunResult:
    """Train `run.model` for `n_epochs` over `steps_per_epoch` batches each, from a checkpoint if given."""
    hp, sink, model = run.hyperparameters, run.sink, run.model
    rank, world = rank_and_world()
    sharded = run.sharding == FSDP and world > 1
    groups = shard_model(model, run.parameter_groups) if sharded else run.parameter_groups
    params = [p for p in model.parameters() if p.requires_grad]
    n_total = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in params)
    batch_flops = FlopCounter.of(model)
    total_steps = run.steps_per_epoch * hp.n_epochs
    # fused AdamW on GPUs: one kernel for all parameters instead of several per tensor (what the HF Trainer uses)
    fused = next(model.parameters()).device.type == "cuda"
    optimizer = torch.optim.AdamW(groups or params, lr=hp.learning_rate, weight_decay=hp.weight_decay,
                                  fused=fused or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(hp.lr_scheduler, int(hp.warmup_ratio * total_steps),
                                                                              total_steps))
    state = {"epoch": 0, "batch_in_epoch": 0, "trained_tokens": 0, "flops": 0.0, **run.tags}
    stopper, objective = run.early_stopping, run.objective
    flops_factor = objective.flops_factor if objective is not None else 1
    if stopper is not None:
        state["early_stopping"] = stopper.state
    step = 0
    device = next(model.parameters()).device
    precision = resolve_precision(hp.precision, device)
    if sharded and precision.scaler is not None:  # "auto" on a GPU without bf16
        raise TrainingError("resources.sharding fsdp is not built for fp16 loss scaling, which this GPU needs for "
                            "reduced precision; set hyperparameters.precision to fp32, or leave sharding out.",
                            code="invalid_precision", param="hyperparameters.precision")
    checkpointed = enable_gradient_checkpointing(model) if hp.gradient_checkpointing else ""
    if run.resume_from is not None:
        try:
            state = load_checkpoint(run.resume_from, model, optimizer, scheduler)
            if mismatched := {k: state.get(k) for k, v in run.tags.items() if state.get(k) != v}:
                raise ValueError(f"it was written for {mismatched}, not {run.tags}")
            if objective is not None:
                objective.load_state_dict(load_extra_state(run.resume_from))
            if stopper is not None:
                stopper.state = state.setdefault("early_stopping", stopper.state)
        except (ValueError, OSError, RuntimeError) as exc:
            raise TrainingError(f"Cannot resume from {run.resume_from.name}: {exc}. Delete the job's checkpoints "
                                "or start a new job.", code="invalid_checkpoint") from exc
        step = state.pop("step")
        precision.load_scaler_state(state.get("grad_scaler"))
        sink.message(f"{run.label}Resumed from checkpoint at step {step} (epoch {state['epoch']}, "
                     f"batch {state['batch_in_epoch']})", data={"step": step})
    accumulation = hp.gradient_accumulation_steps
    sink.message(f"{run.label}Training {n_trainable:,} of {n_total:,} parameters for {total_steps} steps "
                 f"({hp.n_epochs} epochs × {run.steps_per_epoch}) on {device.type}, precision {precision.name}"
                 + (" (auto)" if hp.precision == "auto" else "")
                 + (f", {accumulation} micro-batches per step" if accumulation > 1 else "")
                 + (f", gradient checkpointing in {checkpointed}" if checkpointed else "")
                 + (f", data parallel over {world} processes" if world > 1 else "")
                 + (", weights, gradients and AdamW state sharded (FSDP)" if sharded else ""),
                 data={"trainable_parameters": n_trainable, "total_parameters": n_total, "total_steps": total_steps,
                       "precision": precision.name, "gradient_accumulation_steps": accumulation,
                       "gradient_checkpointing": bool(checkpointed), "device": device.type, "processes": world,
                       "sharding": FSDP if sharded else "none"})
    log_every = max(1, min(50, run.steps_per_epoch // 4))
    result = RunResult("succeeded", step, state["trained_tokens"], state["flops"], float("nan"),
                       total_parameters=n_total, trainable_parameters=n_trainable)
    window_loss, window_n, window_start, window_samples = 0.0, 0, time.perf_counter(), 0
    window_tokens = 0
    saved_at = step  # a resumed run's checkpoint is on disk already

    def checkpoint() -> None:
        nonlocal saved_at
        extra = objective.state_dict() if objective is not None else None
        if precision.scaler is not None:
            state["grad_scaler"] = precision.scaler_state()
        path = save_checkpoint(run.checkpoint_dir, step, model, optimizer, scheduler, state, extra=extra)
        saved_at = step
        sink.checkpoint(step, path, finite({"train_loss": result.last_loss, **result.eval_metrics}))

    def stopped(status: Literal["cancelled", "paused", "halted"]) -> RunResult:
        result.status, result.step = status, step
        result.trained_tokens, result.flops = state["trained_tokens"], state["flops"]
        return result

    keep_best = run.evaluate is not None and (hp.select_best or stopper is not None)
    best = None if not keep_best else (BestCheckpoint(run.checkpoint_dir, stopper.score) if stopper else
                                       BestCheckpoint(run.checkpoint_dir, score, standard_error))
    model.train()
    try:
        while state["epoch"] < hp.n_epochs and result.stopped_early_at is None:
            for b in range(state["batch_in_epoch"], run.steps_per_epoch):
                if run.halt_at_step is not None and step >= run.halt_at_step:
                    if saved_at != step:
                        checkpoint()
                    return stopped("halted")
                stop = sink.should_stop()  # a rank > 0 has a quiet sink: rank 0's answer is broadcast
                if world > 1:
                    stop = broadcast_stop(stop, device)
                if stop == "cancel":
                    return stopped("cancelled")
                if stop == "pause":
                    checkpoint()
                    return stopped("paused")
                batch = run.batch(state["epoch"], b)
                loss = _backward(model, objective, batch, accumulation, precision, step + 1, hp.learning_rate,
                                 rank, world)
                if sharded:  # FSDP reduce-scattered the gradients in backward already
                    loss = all_reduce_loss(loss, world, device)
                elif world > 1:
                    loss = all_reduce_gradients(params, loss, world)
                if world > 1:
                    _guard(loss, step + 1, hp.learning_rate)
                _optimizer_step(optimizer, params, hp.max_grad_norm, precision)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if objective is not None:
                    objective.after_step(step, total_steps)
                tokens = int(batch["attention_mask"].sum())
                state["batch_in_epoch"] = b + 1
                state["trained_tokens"] += tokens
                state["flops"] += batch_flops(batch) * flops_factor
                result.last_loss = loss
                window_loss, window_n = window_loss + result.last_loss, window_n + 1
                window_samples += batch["input_ids"].shape[0]
                window_tokens += tokens
                end_of_epoch = b + 1 == run.steps_per_epoch
                if end_of_epoch:
                    state["epoch"], state["batch_in_epoch"] = state["epoch"] + 1, 0
                if step == 1 or step % log_every == 0 or end_of_epoch:
                    elapsed = time.perf_counter() - window_start
                    sink.metrics(step, {"train_loss": window_loss / window_n, "learning_rate": scheduler.get_last_lr()[0],
                                        "epoch": step / run.steps_per_epoch,
                                        "samples_per_second": window_samples / max(elapsed, 1e-9),
                                        "tokens_per_second": window_tokens / max(elapsed, 1e-9),
                                        "trained_tokens": state["trained_tokens"], "flops": state["flops"],
                                        **(objective.metrics() if objective is not None else {})})
                    window_loss, window_n, window_start, window_samples = 0.0, 0, time.perf_counter(), 0
                    window_tokens = 0
                due = (hp.eval_every and step % hp.eval_every == 0) or (not hp.eval_every and end_of_epoch)
                if run.evaluate is not None and due:
                    result.eval_metrics, result.eval_step = run.evaluate(), step
                    model.train()
                    sink.metrics(step, dict(result.eval_metrics))
                    if best is not None:
                        best.offer(step, result.eval_metrics, model)
                    if stopper is not None and stopper.should_stop(step, result.eval_metrics):
                        result.stopped_early_at = step
                        why, data = stopper.reason(step)
                        sink.message(f"{run.label}{why}", data=data)
                        break
                if (hp.checkpoint_every and step % hp.checkpoint_every == 0) or end_of_epoch:
                    checkpoint()
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise out_of_memory(step, device, hp) from exc
    result.step, result.trained_tokens, result.flops = step, state["trained_tokens"], state["flops"]
    if best is not None:
        if result.eval_step != step:  # the last weights compete too, so they are scored first
            result.eval_metrics, result.eval_step = run.evaluate(), step
            sink.metrics(step, dict(result.eval_metrics))
            best.offer(step, result.eval_metrics, model)
        result.selected_step = best.restore(model, step, sink, run.label)
    return result


def out_of_memory(step: int, device: torch.device, hp: Hyperparameters) -> TrainingError:
    return TrainingError(f"Out of memory at step {step + 1} on {device.type}; lower batch_size (now "
                         f"{hp.batch_size}) or max_length (now {hp.max_length}), or keep batch_size and set "
                         f"micro_batch_size (now {math.ceil(hp.batch_size / hp.gradient_accumulation_steps)} rows "
                         "at once) or gradient_checkpointing.", code="out_of_memory")
