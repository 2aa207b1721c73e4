"""BitFit (Ben-Zaken et al. 2021, "BitFit: Simple Parameter-efficient Fine-tuning").

Artifact: `delta/delta.safetensors` with only the tensors that changed (biases and the head),
applied over the shared base model by `app.training.delta.apply_delta`.
"""
from __future__ import annotations

from app.training.base import TrainContext, TrainResult
from app.training.task_run import run_classification
from app.training.delta import is_new_or_head, save_delta
from app.training.strategies.bitfit.config import BitFitSettings


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    train_head = ctx.settings_as(BitFitSettings).train_head
    for name, param in model.named_parameters():
        param.requires_grad_(name.endswith(".bias") or (train_head and is_new_or_head(name, new_parameters)))
    return model


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, save_delta)
