"""Partial fine-tuning (Donahue et al. 2014, DeCAF; Lee et al. 2019, "What Would Elsa Do? Freezing
Layers During Transformer Fine-Tuning"): the top `top_layers` encoder layers, the head and (with
`train_pooler`) the pooler train; embeddings and lower layers stay frozen. `top_layers=0` is a linear
probe.

Artifact: `delta/delta.safetensors` with the trained tensors and the head, applied over the shared
base model by `app.training.delta.apply_delta`.
"""
from __future__ import annotations

from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.task_run import run_classification
from app.training.delta import is_new_or_head, save_delta
from app.training.strategies.partial.config import PartialSettings
from app.training.structure import encoder_layers


def trained_prefixes(model, ctx: TrainContext) -> tuple[str, ...]:
    """State-dict prefixes of the top `top_layers` layers; refuses more layers than the model has."""
    k = ctx.settings_as(PartialSettings).top_layers
    prefix, layers = encoder_layers(model)
    if k > len(layers):
        dropped = ctx.settings.drop_top_layers
        after = f" after drop_top_layers={dropped}" if dropped else ""
        raise TrainingError(f"top_layers={k} exceeds the {len(layers)} encoder layers of {ctx.base_model.id}{after}; "
                            f"give at most {len(layers)}.", code="invalid_method_settings",
                            param=f"method.{ctx.method}.top_layers")
    return tuple(f"{prefix}.{i}." for i in range(len(layers) - k, len(layers)))


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    top = trained_prefixes(model, ctx)  # the pooler, with train_pooler, is among new_parameters
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(top) or is_new_or_head(name, new_parameters))
    return model


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, save_delta)
