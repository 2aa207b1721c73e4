"""Helpers for every method that wraps the `peft` library (LoRA, IA3, prefix/prompt tuning, …).

A task head (and sometimes a pooler) is missing from the base checkpoint and starts random: it must
train whole and ship inside the adapter (`modules_to_save`), never be adapted itself.
"""
from __future__ import annotations

import torch

from app.training.base import TrainContext, TrainingError
from app.training.base_facts import target_choices, unmatched_targets
from app.training.lora_shape import default_targets


def new_module_names(new_parameters: set[str]) -> list[str]:
    """Modules (paths below the model's base prefix) holding weights the base checkpoint lacked."""
    return sorted({key.rsplit(".", 1)[0].split(".", 1)[-1] for key in new_parameters})


def linear_module_paths(model: torch.nn.Module, exclude: set[str] = frozenset()) -> list[str]:
    """Paths of the model's linear layers, but for those whose path ends with a name in `exclude`."""
    return [name for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not any(name.endswith(x) for x in exclude)]


def linear_module_names(model: torch.nn.Module, exclude: set[str] = frozenset()) -> list[str]:
    """Short names of the model's linear layers (what peft's target_modules matches on)."""
    return sorted({name.rsplit(".", 1)[-1] for name in linear_module_paths(model, exclude)})


def all_linear_names(model: torch.nn.Module, exclude: set[str]) -> list[str]:
    """Full names of every linear layer outside the modules in `exclude` (those train whole)."""
    return sorted(name for name, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and not any(f".{x}." in f".{name}." for x in exclude))


def checked_targets(model: torch.nn.Module, ctx: TrainContext, targets: list[str], new_modules: list[str],
                    field: str = "target_modules") -> list[str]:
    """`targets` if every one names a linear layer of the base (not a new module), else a TrainingError
    naming the choices, reported on `method.<type>.<field>`."""
    missing = unmatched_targets(targets, linear_module_paths(model, exclude=set(new_modules)))
    if missing:
        raise TrainingError(f"target_modules {missing} are not linear layers of {ctx.base_model.id}; "
                            f"{target_choices(linear_module_names(model, set(new_modules)))}",
                            code="invalid_method_settings",
                            param=f"method.{ctx.method}.{field}")
    return targets


def encoder_targets(model: torch.nn.Module, ctx: TrainContext, wanted: list[str] | str | None, whole: list[str],
                    never: set[str] = frozenset(), field: str = "target_modules") -> list[str]:
    """What LoRA (or IA3) adapts on an encoder: for "all-linear" every linear layer outside `whole` (trained
    whole) and `never`; else the named layers, or LoRA's model_type defaults, checked as checked_targets does."""
    if wanted == "all-linear":
        return all_linear_names(model, exclude={*whole, *never})
    return checked_targets(model, ctx, wanted or default_targets(model.config.model_type), whole, field)


def save_adapter(model, tokenizer, output_dir, ctx: TrainContext, new_parameters: set[str]) -> None:
    """`adapter/`: peft's adapter_config.json (naming the base's public name) + adapter_model.safetensors,
    head included."""
    from app.training.model_card import publish_adapter_config

    model.save_pretrained(output_dir / "adapter")
    publish_adapter_config(output_dir / "adapter", ctx)


def apply_adapter(model, artifact_dir):
    """Load `adapter/` (peft's format) over the base classifier."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, artifact_dir / "adapter")
