"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") via PEFT.

Artifact: `adapter/adapter_config.json` + `adapter/adapter_model.safetensors`, classification head
included, loadable with `PeftModel.from_pretrained`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.loop import run_classification

DEFAULT_TARGETS = {"bert": ["query", "value"], "roberta": ["query", "value"], "distilbert": ["q_lin", "v_lin"]}


def linear_module_names(model: torch.nn.Module, exclude: set[str] = frozenset()) -> list[str]:
    """Short names of the model's linear layers (what LoRA's target_modules matches on)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and not any(name.endswith(x) for x in exclude)})


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    from peft import LoraConfig, TaskType, get_peft_model

    settings = ctx.settings
    # weights the base lacked (head, sometimes a pooler) start random: train and save them whole
    # with the adapter (modules_to_save) rather than adapting them with LoRA
    new_modules = sorted({key.rsplit(".", 1)[0].split(".", 1)[-1] for key in new_parameters})
    available = linear_module_names(model, exclude=set(new_modules))
    targets = settings.get("target_modules") or DEFAULT_TARGETS.get(model.config.model_type, ["query", "value"])
    missing = [t for t in targets if t not in available]
    if missing:
        raise TrainingError(f"target_modules {missing} are not linear layers of {ctx.base_model.id}; "
                            f"choose from {available}", code="invalid_method_settings",
                            param="method.lora.target_modules")
    config = LoraConfig(task_type=TaskType.SEQ_CLS, modules_to_save=new_modules or None, target_modules=targets,
                        r=settings.get("r", 8), lora_alpha=settings.get("lora_alpha", 16),
                        lora_dropout=settings.get("lora_dropout", 0.1), bias=settings.get("bias", "none"))
    return get_peft_model(model, config)


def _save(model, tokenizer, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
    model.save_pretrained(output_dir / "adapter")


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, _save)
