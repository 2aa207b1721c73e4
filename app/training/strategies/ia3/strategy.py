"""(IA)³ (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning") via PEFT.

Artifact: `adapter/adapter_config.json` + `adapter/adapter_model.safetensors`, classification head
included, loadable with `PeftModel.from_pretrained`.
"""
from __future__ import annotations

from app.training.base import TrainContext, TrainResult
from app.training.task_run import run_classification
from app.training.tasks.base import peft_task_type
from app.training.peft_adapter import encoder_targets, new_module_names, save_adapter
from app.training.strategies.ia3.config import IA3Settings


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    from peft import IA3Config, get_peft_model

    settings = ctx.settings_as(IA3Settings)
    new_modules = new_module_names(new_parameters)
    # null: peft's own placement for the base; "all-linear" or names: as LoRA resolves them
    targets = settings.target_modules and encoder_targets(model, ctx, settings.target_modules, new_modules)
    feedforward = settings.feedforward_modules
    if targets and feedforward is None:
        feedforward = []  # peft's default feed-forward names need not be among the targets given
    config = IA3Config(task_type=peft_task_type(model), modules_to_save=new_modules or None, target_modules=targets,
                       feedforward_modules=feedforward)
    return get_peft_model(model, config)


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, save_adapter)
