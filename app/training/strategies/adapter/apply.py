"""The `bottleneck/` artifact: its layout, and applying it over a freshly loaded base classifier.

  bottleneck/adapter_config.json        placement, reduction factor, bottleneck size, non-linearity, the
                                        base's type, hidden size and layer count, base model id and hash,
                                        and `stack` (MAD-X: the frozen adapters under this one, bottom first)
  bottleneck/adapter_model.safetensors  the adapters, the head and any trained LayerNorm, by state_dict name
  bottleneck/stack/<i>/…                a copy of stacked adapter i's own adapter_config.json and
                                        adapter_model.safetensors (the job's artifact files, byte for byte,
                                        so `stack[i].sha256` matches that job's artifact listing)

Stacked adapters are copied, not referenced: a downloaded artifact rebuilds the model with the base
alone, whatever later happens to the stacked jobs. `apply_adapter(..., swap=…)` replaces one of them
with another compatible adapter at load time (MAD-X's zero-shot cross-lingual transfer, Pfeiffer et
al. 2020, "MAD-X: An Adapter-Based Framework for Multi-Task Cross-Lingual Transfer").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from app.training.base import BaseModelRef, TrainingError
from app.training.strategies.adapter.modules import STACK, insert_adapters

CONFIG = Path("bottleneck") / "adapter_config.json"
WEIGHTS = Path("bottleneck") / "adapter_model.safetensors"
FORMAT = "tuneforge-bottleneck-adapter/1"


def adapter_config(model: torch.nn.Module, settings: Any, name: str, size: int, base: BaseModelRef,
                   train_layer_norm: bool = False) -> dict[str, Any]:
    """What `apply_adapter` needs to rebuild the adapters, and which base they belong to; `settings`
    is AdapterSettings or LanguageAdapterSettings (placement, reduction_factor, non_linearity, init_scale)."""
    return {"format": FORMAT, "name": name, "placement": settings.placement,
            "reduction_factor": settings.reduction_factor, "bottleneck_size": size,
            "non_linearity": settings.non_linearity, "init_scale": settings.init_scale,
            "train_layer_norm": train_layer_norm, "model_type": model.config.model_type,
            "hidden_size": model.config.hidden_size, "num_layers": model.config.num_hidden_layers,
            "base_model": {"id": base.id, "sha256": base.sha256}}


def bottleneck_dir(path: Path) -> Path:
    """The folder holding adapter_config.json: `path` itself, or a job artifact's `bottleneck/`."""
    path = Path(path)
    return path / CONFIG.parent if (path / CONFIG).is_file() else path


def _check_shape(model: torch.nn.Module, config: dict[str, Any]) -> None:
    ours = (model.config.model_type, model.config.hidden_size, model.config.num_hidden_layers)
    theirs = (config["model_type"], config["hidden_size"], config["num_layers"])
    if ours != theirs:
        raise TrainingError(f"These adapters were trained on {config['base_model']['id']!r} (type, hidden size, "
                            f"layers = {theirs}); this base has {ours}. Use the matching base model.",
                            code="base_model_mismatch")


def load_adapter(model: torch.nn.Module, source: Path, slot: str, base_sha256: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    """Insert the bottleneck adapter in `source` (a `bottleneck/` dir or a job artifact dir) into
    `model` as `slot`, with its trained weights; its head and LayerNorms, if any, are not taken.
    Refuses an adapter of another base (`base_sha256`, when given), of another shape, or one that is
    itself stacked over others. Returns its config."""
    source = bottleneck_dir(source)
    if not (source / CONFIG.name).is_file():
        raise TrainingError(f"{source} holds no bottleneck adapter ({CONFIG.name} missing); give a job artifact "
                            "directory with bottleneck/, or that folder itself.", code="invalid_adapter", param=param)
    config = json.loads((source / CONFIG.name).read_text())
    base = config["base_model"]
    if base_sha256 is not None and base["sha256"] != base_sha256:
        raise TrainingError(f"The adapter in {source} was trained on base model {base['id']!r} (sha256 "
                            f"{base['sha256'][:12]}…), not on this one (sha256 {base_sha256[:12]}…); stack or swap in "
                            "adapters trained on the same base.", code="base_model_mismatch", param=param)
    _check_shape(model, config)
    if config.get("stack"):
        raise TrainingError(f"The adapter in {source} is itself stacked over {[e['job_id'] for e in config['stack']]}; "
                            "stack those adapters instead.", code="invalid_adapter", param=param)
    insert_adapters(model, slot, config["placement"], config["bottleneck_size"], config["non_linearity"],
                    config["init_scale"])
    theirs, ours = f".{STACK}.{config['name']}.", f".{STACK}.{slot}."
    tensors = {k.replace(theirs, ours): v for k, v in load_file(source / WEIGHTS.name).items() if theirs in k}
    _load_exactly(model, tensors, ours, source / WEIGHTS.name)
    return config


def _load_exactly(model: torch.nn.Module, tensors: dict[str, torch.Tensor], slot_marker: str, where: Path) -> None:
    """Load `tensors` into `model`; every one must fit, and every weight of the slot must be there."""
    state = model.state_dict()
    foreign = sorted(k for k, v in tensors.items() if k not in state or state[k].shape != v.shape)
    absent = sorted(k for k in state if slot_marker in k and k not in tensors)
    if foreign or absent:
        raise TrainingError(f"{where} does not fit this base: unknown or reshaped {foreign[:5]}, missing "
                            f"{absent[:5]}", code="base_model_mismatch")
    model.load_state_dict(tensors, strict=False)


def load_frozen(model: torch.nn.Module, source: Path, slot: str, base_sha256: str,
                param: str | None = None) -> dict[str, Any]:
    """`load_adapter`, its weights frozen: a stacked adapter under a task adapter (MAD-X)."""
    config = load_adapter(model, source, slot, base_sha256, param)
    for name, weight in model.named_parameters():
        if f".{STACK}.{slot}." in name:
            weight.requires_grad_(False)
    return config


def apply_adapter(model: torch.nn.Module, artifact_dir: Path,
                  swap: dict[str, Path] | None = None) -> torch.nn.Module:
    """Insert the artifact's adapters into `model` (the base with a fresh head) and load its tensors:
    first its stack (bottom first; `swap` maps a stacked job id to another adapter to use in its place),
    then its own adapter. Refuses a base of another shape (the manifest's hash check, in
    load_classifier, refuses any other)."""
    artifact_dir, swap = Path(artifact_dir), dict(swap or {})
    config = json.loads((artifact_dir / CONFIG).read_text())
    _check_shape(model, config)
    stack = config.get("stack") or []
    unknown = sorted(set(swap) - {entry["job_id"] for entry in stack})
    if unknown:
        raise TrainingError(f"swap names {unknown}, which this artifact does not stack; its stack is "
                            f"{[entry['job_id'] for entry in stack]}.", code="invalid_swap", param="swap")
    for entry in stack:
        source = swap.get(entry["job_id"], artifact_dir / CONFIG.parent / entry["dir"])
        load_frozen(model, Path(source), entry["slot"], config["base_model"]["sha256"], param="swap")
    insert_adapters(model, config["name"], config["placement"], config["bottleneck_size"], config["non_linearity"],
                    config["init_scale"])
    _load_exactly(model, load_file(artifact_dir / WEIGHTS), f".{STACK}.{config['name']}.", WEIGHTS)
    return model
