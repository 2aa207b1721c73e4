"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") via PEFT.

Artifact: `adapter/adapter_config.json` + `adapter/adapter_model.safetensors`, classification head
included, loadable with `PeftModel.from_pretrained`.
"""
from __future__ import annotations

from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.task_run import run_classification
from app.training.tasks.base import peft_task_type
from app.training.peft_adapter import encoder_targets, new_module_names, save_adapter
from app.training.strategies.lora.config import LoraSettings


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    from peft import get_peft_model

    settings = ctx.settings_as(LoraSettings)
    new_modules = new_module_names(new_parameters)
    whole = sorted({*new_modules, *(settings.modules_to_save or [])})
    unknown = [m for m in settings.modules_to_save or [] if not any(n.endswith(m) for n, _ in model.named_modules())]
    if unknown:
        raise TrainingError(f"modules_to_save {unknown} name no module of {ctx.base_model.id}",
                            code="invalid_method_settings", param="method.lora.modules_to_save")
    config = settings.peft_config(encoder_targets(model, ctx, settings.target_modules, whole),
                                  task_type=peft_task_type(model), modules_to_save=whole or None, bias=settings.bias,
                                  use_rslora=settings.use_rslora, use_dora=settings.use_dora)
    return get_peft_model(model, config)


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, save_adapter)
