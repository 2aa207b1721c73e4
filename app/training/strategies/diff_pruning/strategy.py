"""Diff pruning (Guo, Rush & Kim 2021, "Parameter-Efficient Transfer Learning with Diff Pruning").

The base stays frozen; a dense delta over the encoder's weights (embeddings optional) trains with
hard-concrete L0 gates (variant "l0") or without (variant "magnitude"), the new head trains whole.
For the last `finetune_fraction` of the steps the delta is projected to its `target_sparsity`
largest entries and only those train (Guo et al.'s magnitude projection + fixmask fine-tuning, in
one run; see modules.py). Artifact: `sparse_delta/` (see apply.py), applied by `apply.apply_sparse_delta`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.task_run import run_classification
from app.training.data import load_classification_examples
from app.training.delta import is_new_or_head
from app.training.strategies.diff_pruning.apply import INDICES, SUMMARY, VALUES, WEIGHTS
from app.training.strategies.diff_pruning.config import DiffPruningSettings
from app.training.strategies.diff_pruning.modules import DiffPruned, HardConcrete, Scales


def targeted_names(model: torch.nn.Module, new_parameters: set[str], include_embeddings: bool) -> list[str]:
    """The base encoder's tensors that get a delta: not the head nor anything the base lacked, and
    not the embeddings unless asked."""
    prefix = f"{model.base_model_prefix}."
    return [name for name, _ in model.named_parameters()
            if name.startswith(prefix) and not is_new_or_head(name, new_parameters)
            and (include_embeddings or "embeddings" not in name.split("."))]


def _steps(ctx: TrainContext) -> tuple[int, int]:
    """(optimizer steps of the whole run, steps already done when resuming): when the mask fixes."""
    hp = ctx.hyperparameters
    total = math.ceil(len(load_classification_examples(ctx.train_file)) / hp.batch_size) * hp.n_epochs
    done = json.loads((ctx.resume_from / "state.json").read_text())["step"] if ctx.resume_from else 0
    return total, done


def _prepare(model, ctx: TrainContext, new_parameters: set[str]) -> DiffPruned:
    settings = ctx.settings_as(DiffPruningSettings)
    names = targeted_names(model, new_parameters, settings.include_embeddings)
    if not names:
        raise TrainingError(f"{ctx.base_model.id} has no encoder weights to diff (under "
                            f"{model.base_model_prefix!r}); choose another base model or method.",
                            code="invalid_base_model", param="model")
    for name, param in model.named_parameters():
        param.requires_grad_(is_new_or_head(name, new_parameters))
    total, done = _steps(ctx)
    gates = HardConcrete(settings.beta, settings.l, settings.r) if settings.variant == "l0" else None
    targeted = sum(model.get_parameter(name).numel() for name in names)
    keep = max(1, round(settings.target_sparsity * targeted))
    scales = Scales(dense=settings.dense_lr_scale,
                    alpha=settings.alpha_learning_rate / ctx.hyperparameters.learning_rate)
    pruned = DiffPruned(model, names, gates=gates, alpha_init=settings.alpha_init, scales=scales,
                        l0_lambda=settings.l0_lambda, keep=keep,
                        switch_step=total - round(settings.finetune_fraction * total), step=done, sink=ctx.sink)
    ctx.sink.message(f"Diff pruning ({settings.variant}): a dense delta over {targeted:,} base parameters in "
                     f"{len(names)} tensors trains{' with its L0 gates' if gates else ''}; the artifact keeps "
                     f"{keep:,} ({100 * keep / targeted:.3g}%)", data={"targeted": targeted, "keep": keep})
    return pruned


def _save(model: DiffPruned, tokenizer, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
    """The projected delta as indices + values, the head dense, and a summary with the kept fraction."""
    settings = ctx.settings_as(DiffPruningSettings)
    sparse = {name: pair for name, pair in model.sparse().items() if pair[0].numel()}
    tensors = {f"{name}{suffix}": t for name, pair in sparse.items() for suffix, t in zip((INDICES, VALUES), pair)}
    head = {n: p.detach().cpu().contiguous() for n, p in model.model.named_parameters()
            if is_new_or_head(n, new_parameters)}
    base = {"id": ctx.base_model.id, "sha256": ctx.base_model.sha256}
    (output_dir / WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
    save_file({**tensors, **head}, output_dir / WEIGHTS,
              metadata={"base_model": base["id"], "base_model_sha256": base["sha256"]})
    kept, targeted = sum(i.numel() for i, _ in sparse.values()), model.targeted
    summary = {"format": "tuneforge-sparse-delta/1", "variant": settings.variant,
               "target_sparsity": settings.target_sparsity, "include_embeddings": settings.include_embeddings,
               "targeted_parameters": targeted, "kept": kept, "kept_fraction": kept / targeted,
               "tensors": {name: i.numel() for name, (i, _) in sparse.items()}, "base_model": base}
    (output_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
    ctx.sink.message(f"Diff pruning: the delta keeps {kept:,} of {targeted:,} targeted base parameters "
                     f"({100 * kept / targeted:.3g}%)", data={"kept": kept, "targeted": targeted})


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, _save)
