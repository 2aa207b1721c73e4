"""Bottleneck adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP";
Pfeiffer et al. 2020, "AdapterFusion", for the FFN-only placement), written in-house.

The base stays frozen; a bottleneck after each chosen sub-layer output, the head and (optionally)
the LayerNorms train. Artifact: `bottleneck/` (see apply.py), applied over the shared base by
`apply.apply_adapter`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.checkpoints import trainable_state
from app.training.classification import run_classification
from app.training.delta import is_new_or_head
from app.training.strategies.adapter.apply import CONFIG, WEIGHTS, adapter_config
from app.training.strategies.adapter.config import AdapterSettings
from app.training.strategies.adapter.modules import STACK, encoder_layers, insert_adapters

TASK = "task"  # this adapter's name in each site's stack (a MAD-X language adapter would sit under it)


def _bottleneck_size(model: torch.nn.Module, ctx: TrainContext) -> int:
    """hidden // reduction_factor, refused when that leaves no width."""
    hidden, factor = model.config.hidden_size, ctx.settings_as(AdapterSettings).reduction_factor
    if hidden // factor < 1:
        raise TrainingError(f"reduction_factor {factor} leaves no bottleneck: {ctx.base_model.id} has hidden size "
                            f"{hidden}, and {hidden} // {factor} = 0; choose reduction_factor <= {hidden}.",
                            code="invalid_method_settings", param=f"method.{ctx.method}.reduction_factor")
    return hidden // factor


def _layer_norm_parameters(model: torch.nn.Module) -> set[str]:
    return {f"{module_name}.{name}" for module_name, module in model.named_modules()
            if isinstance(module, torch.nn.LayerNorm) for name, _ in module.named_parameters(recurse=False)}


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    settings = ctx.settings_as(AdapterSettings)
    encoder_layers(model)  # refuses a non-BERT-style base before anything else
    size = _bottleneck_size(model, ctx)
    layer_norms = _layer_norm_parameters(model) if settings.train_layer_norm else set()
    insert_adapters(model, TASK, settings.placement, size, settings.non_linearity, settings.init_scale)
    for name, param in model.named_parameters():
        param.requires_grad_(f".{STACK}." in name or name in layer_norms or is_new_or_head(name, new_parameters))
    return model


def _save(model, tokenizer, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
    """The trainable tensors (adapters, head, trained LayerNorms) and the config to rebuild the adapters."""
    settings = ctx.settings_as(AdapterSettings)
    (output_dir / WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), output_dir / WEIGHTS,
              metadata={"base_model": ctx.base_model.id, "base_model_sha256": ctx.base_model.sha256})
    size = model.config.hidden_size // settings.reduction_factor
    config = adapter_config(model, settings, TASK, size, ctx.base_model)
    (output_dir / CONFIG).write_text(json.dumps(config, indent=2))


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, _save)
