"""The `bottleneck/` artifact: its layout, and applying it over a freshly loaded base classifier.

  bottleneck/adapter_config.json        placement, reduction factor, bottleneck size, non-linearity, the
                                        base's type, hidden size and layer count, base model id and hash
  bottleneck/adapter_model.safetensors  the adapters, the head and any trained LayerNorm, by state_dict name
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from app.training.base import BaseModelRef, TrainingError
from app.training.strategies.adapter.config import AdapterSettings
from app.training.strategies.adapter.modules import STACK, insert_adapters

CONFIG = Path("bottleneck") / "adapter_config.json"
WEIGHTS = Path("bottleneck") / "adapter_model.safetensors"
FORMAT = "tuneforge-bottleneck-adapter/1"


def adapter_config(model: torch.nn.Module, settings: AdapterSettings, name: str, size: int,
                   base: BaseModelRef) -> dict[str, Any]:
    """What `apply_adapter` needs to rebuild the adapters, and which base they belong to."""
    return {"format": FORMAT, "name": name, "placement": settings.placement,
            "reduction_factor": settings.reduction_factor, "bottleneck_size": size,
            "non_linearity": settings.non_linearity, "init_scale": settings.init_scale,
            "train_layer_norm": settings.train_layer_norm, "model_type": model.config.model_type,
            "hidden_size": model.config.hidden_size, "num_layers": model.config.num_hidden_layers,
            "base_model": {"id": base.id, "sha256": base.sha256}}


def apply_adapter(model: torch.nn.Module, artifact_dir: Path) -> torch.nn.Module:
    """Insert the artifact's adapters into `model` (the base with a fresh head) and load its tensors;
    refuses a base of another shape (the manifest's hash check, in load_classifier, refuses any other)."""
    config = json.loads((Path(artifact_dir) / CONFIG).read_text())
    ours = (model.config.model_type, model.config.hidden_size, model.config.num_hidden_layers)
    theirs = (config["model_type"], config["hidden_size"], config["num_layers"])
    if ours != theirs:
        raise TrainingError(f"These adapters were trained on {config['base_model']['id']!r} (type, hidden size, "
                            f"layers = {theirs}); this base has {ours}. Use the matching base model.",
                            code="base_model_mismatch")
    insert_adapters(model, config["name"], config["placement"], config["bottleneck_size"], config["non_linearity"],
                    config["init_scale"])
    tensors, state = load_file(Path(artifact_dir) / WEIGHTS), model.state_dict()
    foreign = sorted(k for k, v in tensors.items() if k not in state or state[k].shape != v.shape)
    absent = sorted(k for k in state if f".{STACK}." in k and k not in tensors)
    if foreign or absent:
        raise TrainingError(f"{WEIGHTS} does not fit this base: unknown or reshaped {foreign[:5]}, missing "
                            f"{absent[:5]}", code="base_model_mismatch")
    model.load_state_dict(tensors, strict=False)
    return model
