"""Structural options of every task method: drop or re-initialise the encoder's top layers.

- `drop_top_layers` (Sajjad et al. 2023, "On the Effect of Dropping Layers of Pre-trained Transformer
  Models"): the top k layers are removed and `config.num_hidden_layers` shrinks. The manifest's
  settings record k; `restore_structure` drops the same layers from a freshly loaded base before an
  artifact is applied over it (a whole `model/` already has the shallower config).
- `reinit_top_layers` (Zhang et al. 2021, "Revisiting Few-sample BERT Fine-tuning"): the pooler and
  the top k layers left after dropping (at least one pretrained layer must remain) get the model's
  own `_init_weights`, under a seed derived from the job seed (so a resumed job rebuilds the same
  weights). Those weights are not in the base, so they join `new_parameters`, like the head: peft
  methods train them whole in `modules_to_save`, delta methods ship them in the delta, full
  fine-tuning saves them with the model.
"""
from __future__ import annotations

from typing import Any

import torch

from app.training.base import TrainContext, TrainingError
from app.training.config import TaskMethodSettings
from app.training.pooling import resolve_pooling, use_mean_pooling
from app.training.registry import get_strategy

REINIT_SEED_OFFSET = 7_919  # the re-init stream differs from the head's (seeded with the job seed itself)


def encoder_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """(qualified name, module list) of the encoder's stack of `config.num_hidden_layers` layers."""
    depth = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if name and isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            return name, module
    raise TrainingError(f"cannot find the {depth} encoder layers of this {model.config.model_type} model, so its "
                        "layers cannot be chosen, dropped or re-initialised; use a BERT-like encoder.",
                        code="invalid_base_model")


def is_pooler(name: str) -> bool:
    """A parameter of the pooler (BERT's dense+tanh over [CLS]), by state_dict name."""
    return ".pooler." in f".{name}"


def restructure(model: torch.nn.Module, ctx: TrainContext, new_parameters: set[str]) -> torch.nn.Module:
    """Apply the job's `train_pooler`, `drop_top_layers` then `reinit_top_layers`: the pooler's and
    re-initialised parameter names join `new_parameters`, so every method trains and ships them whole.
    Refuses counts the base lacks."""
    settings = ctx.settings_as(TaskMethodSettings)
    drop, reinit = settings.drop_top_layers, settings.reinit_top_layers
    pooling, why = resolve_pooling(settings.pooling, get_strategy(ctx.method).auto, model, ctx.base_model.path)
    if settings.pooling == "auto" and pooling == "mean":  # the manifest records it, so the artifact loads with it
        ctx.settings = settings = settings.model_copy(update={"pooling": pooling})
    if pooling == "mean":
        use_mean_pooling(model)
        ctx.sink.message(f"The head reads the mean of the last hidden states (pooling 'mean', {why}; Reimers & "
                         "Gurevych 2019)" + ("; train_pooler has no pooler to train" if settings.train_pooler else ""),
                         data={"pooling": pooling})
    elif settings.train_pooler:  # trained whole and shipped, like the head
        new_parameters |= {name for name, _ in model.named_parameters() if is_pooler(name)}
    if not (drop or reinit):
        return model
    depth, param = len(encoder_layers(model)[1]), f"method.{ctx.method}"
    if drop >= depth:
        raise TrainingError(f"drop_top_layers={drop} would leave none of the {depth} encoder layers of "
                            f"{ctx.base_model.id}; give at most {depth - 1}.", code="invalid_method_settings",
                            param=f"{param}.drop_top_layers")
    if reinit >= depth - drop:  # at least one pretrained layer must remain (and a layer for peft to adapt)
        left = f"the {depth - drop} left after drop_top_layers={drop}" if drop else f"the {depth}"
        raise TrainingError(f"reinit_top_layers={reinit} would re-initialise every one of {left} encoder layers of "
                            f"{ctx.base_model.id}, leaving nothing pretrained; give at most {depth - drop - 1}.",
                            code="invalid_method_settings", param=f"{param}.reinit_top_layers")
    if drop:
        drop_top_layers(model, drop)
        ctx.sink.message(f"Dropped the top {drop} of {depth} encoder layers (Sajjad et al. 2023)")
    if reinit:
        new_parameters |= reinit_top_layers(model, reinit, ctx.hyperparameters.seed)
        ctx.sink.message(f"Re-initialised the pooler and the top {reinit} encoder layers (Zhang et al. 2021)")
    return model


def drop_top_layers(model: torch.nn.Module, k: int) -> torch.nn.Module:
    """Remove the top `k` layers in place; the config (saved with a whole model) says the new depth."""
    layers = encoder_layers(model)[1]
    keep = len(layers) - k
    del layers[keep:]
    model.config.num_hidden_layers = keep
    if isinstance(getattr(model.config, "layer_types", None), list):  # per-layer attention kinds
        model.config.layer_types = model.config.layer_types[:keep]
    return model


def reinit_top_layers(model: torch.nn.Module, k: int, seed: int) -> set[str]:
    """Re-initialise the pooler and the top `k` layers with `model._init_weights`, deterministically from
    `seed`, leaving the global RNG untouched; returns the re-initialised parameters' names."""
    prefix, layers = encoder_layers(model)
    tops = [(f"{prefix}.{i}", layers[i]) for i in range(len(layers) - k, len(layers))]
    tops += [(name, module) for name, module in model.named_modules() if name.rsplit(".", 1)[-1] == "pooler"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + REINIT_SEED_OFFSET)
        for _, top in tops:
            for module in top.modules():
                own = list(module.parameters(recurse=False))
                for p in own:  # transformers skips weights flagged as loaded from the checkpoint
                    p._is_hf_initialized = False
                model._init_weights(module)
                for p in own:
                    p._is_hf_initialized = True
    return {f"{name}.{p}" for name, top in tops for p, _ in top.named_parameters()}


def restore_structure(model: torch.nn.Module, settings: dict[str, Any]) -> torch.nn.Module:
    """The shape a job trained (its manifest's settings) rebuilt over a freshly loaded base, so an
    artifact applies: the dropped layers go again. Re-initialised weights come from the artifact."""
    drop = settings.get("drop_top_layers") or 0
    if drop:
        drop_top_layers(model, drop)
    return use_mean_pooling(model) if settings.get("pooling") == "mean" else model
