"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") via PEFT.

Artifact: `adapter/adapter_config.json` + `adapter/adapter_model.safetensors`, classification head
included, loadable with `PeftModel.from_pretrained`.
"""
from __future__ import annotations

from app.training.base import TrainContext, TrainResult
from app.training.classification import run_classification
from app.training.peft_adapter import checked_targets, new_module_names, save_adapter
from app.training.strategies.lora.config import LoraSettings

DEFAULT_TARGETS = {"bert": ["query", "value"], "roberta": ["query", "value"], "distilbert": ["q_lin", "v_lin"]}


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    from peft import LoraConfig, TaskType, get_peft_model

    settings = ctx.settings_as(LoraSettings)
    new_modules = new_module_names(new_parameters)
    targets = settings.target_modules or DEFAULT_TARGETS.get(model.config.model_type, ["query", "value"])
    config = LoraConfig(task_type=TaskType.SEQ_CLS, modules_to_save=new_modules or None,
                        target_modules=checked_targets(model, ctx, targets, new_modules), r=settings.r,
                        lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout, bias=settings.bias)
    return get_peft_model(model, config)


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, save_adapter)
