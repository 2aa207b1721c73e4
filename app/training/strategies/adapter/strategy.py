"""Bottleneck adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP";
Pfeiffer et al. 2020, "AdapterFusion", for the FFN-only placement), written in-house.

The base stays frozen; a bottleneck after each chosen sub-layer output, the head and (optionally)
the LayerNorms train. With `stack` (MAD-X, Pfeiffer et al. 2020), the named jobs' adapters load
frozen under the task adapter first; the worker hands their artifact dirs in `ctx.extra["stack"]`
({job id: dir}). Artifact: `bottleneck/` (see apply.py), applied over the shared base by
`apply.apply_adapter`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from app.fsio import sha256_file
from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.checkpoints import trainable_state
from app.training.task_run import run_classification
from app.training.delta import is_new_or_head
from app.training.strategies.adapter.apply import (CONFIG, WEIGHTS, adapter_config, bottleneck_dir,
                                                   load_frozen)
from app.training.strategies.adapter.config import AdapterSettings
from app.training.strategies.adapter.modules import (STACK, bottleneck_size, encoder_layers,
                                                     insert_adapters)

TASK = "task"  # this adapter's name in each site's stack (stacked MAD-X adapters sit under it)


def stack_slot(i: int) -> str:
    """The name of stacked adapter i at every site (the job id may not be a module name)."""
    return f"stack_{i}"


def _stack_sources(ctx: TrainContext) -> list[tuple[str, Path]]:
    """(job id, its adapter's `bottleneck/` dir) per stacked job, bottom first."""
    given, param = ctx.extra.get("stack", {}), f"method.{ctx.method}.stack"
    sources = []
    for job_id in ctx.settings_as(AdapterSettings).stack or []:
        if job_id not in given:
            raise TrainingError(f"{param}: the adapter of job {job_id} is not available to this worker; it must be "
                                "a succeeded job of yours.", code="stack_job_not_found", param=param)
        sources.append((job_id, bottleneck_dir(given[job_id])))
    return sources


def _layer_norm_parameters(model: torch.nn.Module) -> set[str]:
    return {f"{module_name}.{name}" for module_name, module in model.named_modules()
            if isinstance(module, torch.nn.LayerNorm) for name, _ in module.named_parameters(recurse=False)}


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    settings = ctx.settings_as(AdapterSettings)
    encoder_layers(model)  # refuses a non-BERT-style base before anything else
    size = bottleneck_size(model, settings.reduction_factor, ctx.base_model.id,
                           f"method.{ctx.method}.reduction_factor")
    layer_norms = _layer_norm_parameters(model) if settings.train_layer_norm else set()
    for i, (_, source) in enumerate(_stack_sources(ctx)):  # MAD-X: frozen adapters below the task adapter
        load_frozen(model, source, stack_slot(i), ctx.base_model.sha256, param=f"method.{ctx.method}.stack")
    insert_adapters(model, TASK, settings.placement, size, settings.non_linearity, settings.init_scale)
    for name, param in model.named_parameters():
        param.requires_grad_(f".{STACK}.{TASK}." in name or name in layer_norms
                             or is_new_or_head(name, new_parameters))
    return model


def _save(model, tokenizer, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
    """The trainable tensors (adapters, head, trained LayerNorms) and the config to rebuild the adapters."""
    settings = ctx.settings_as(AdapterSettings)
    (output_dir / WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), output_dir / WEIGHTS,
              metadata={"base_model": ctx.base_model.id, "base_model_sha256": ctx.base_model.sha256})
    size = model.config.hidden_size // settings.reduction_factor
    config = adapter_config(model, settings, TASK, size, ctx.base_model, settings.train_layer_norm)
    if settings.stack:
        config["stack"] = _copy_stack(ctx, output_dir / CONFIG.parent)
    (output_dir / CONFIG).write_text(json.dumps(config, indent=2))


def _copy_stack(ctx: TrainContext, bottleneck: Path) -> list[dict]:
    """Copy each stacked adapter's two files to `bottleneck/stack/<i>/`; its record names the job,
    the slot and the weights' sha256 (that job's own artifact hash, since the bytes are the same)."""
    records = []
    for i, (job_id, source) in enumerate(_stack_sources(ctx)):
        target = bottleneck / "stack" / str(i)
        target.mkdir(parents=True)
        for name in (CONFIG.name, WEIGHTS.name):
            shutil.copyfile(source / name, target / name)
        name = json.loads((target / CONFIG.name).read_text())["name"]
        records.append({"job_id": job_id, "slot": stack_slot(i), "dir": f"stack/{i}", "name": name,
                        "sha256": sha256_file(target / WEIGHTS.name)})
    return records


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, _save)
