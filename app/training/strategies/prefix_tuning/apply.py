"""Applying a prefix-tuning `adapter/` (peft's format) over a freshly loaded base classifier."""
from __future__ import annotations

from pathlib import Path

import torch

from app.training.peft_adapter import apply_adapter
from app.training.strategies.prefix_tuning.backbone import accept_prefix


def apply_prefix(model: torch.nn.Module, artifact_dir: Path) -> torch.nn.Module:
    """peft's PeftModel.from_pretrained, once the backbone takes the prefix (see backbone.py)."""
    return apply_adapter(accept_prefix(model, model.config.name_or_path), Path(artifact_dir))
