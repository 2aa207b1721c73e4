"""Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation"),
applied to every layer of an encoder as in P-Tuning v2 (Liu et al. 2022), via PEFT.

`num_virtual_tokens` learned key/value pairs are prepended in every self-attention layer; they (or,
with prefix_projection, an embedding and MLP producing them) and the new head train, the encoder
stays frozen.

Artifact: `adapter/adapter_config.json` + `adapter/adapter_model.safetensors` (the prefix, already
projected, and the head), peft's format; loading it needs `apply.apply_prefix` with transformers 5
(see backbone.py).
"""
from __future__ import annotations

from app.training.base import TrainContext, TrainResult
from app.training.task_run import run_classification
from app.training.tasks.base import peft_task_type
from app.training.peft_adapter import save_adapter
from app.training.strategies.prefix_tuning.backbone import accept_prefix
from app.training.strategies.prefix_tuning.config import PrefixTuningSettings
from app.training.virtual_tokens import virtual_token_model

PROJECTION_WIDTH = 512  # Li & Liang 2021's MLP width (P-Tuning v2's prefix_hidden_size default too)


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    from peft import PrefixTuningConfig

    settings = ctx.settings_as(PrefixTuningSettings)
    config = PrefixTuningConfig(
        task_type=peft_task_type(model), num_virtual_tokens=settings.num_virtual_tokens,
        prefix_projection=settings.prefix_projection,
        encoder_hidden_size=(settings.encoder_hidden_size or PROJECTION_WIDTH) if settings.prefix_projection else None)
    return virtual_token_model(accept_prefix(model, ctx.base_model.id), ctx, new_parameters, config)


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, save_adapter)
