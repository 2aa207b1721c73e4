"""The `sparse_delta/` artifact of diff pruning: its layout, and applying it over a fresh base.

  sparse_delta/delta.safetensors   per diffed base tensor `<name>.delta_indices` (int32 flat indices,
                                   int64 past 2³¹ entries) and `<name>.delta_values` (float32); the new
                                   head (and any weight the base lacked) dense under its own name;
                                   metadata: base model id and sha256
  sparse_delta/sparse_delta.json   variant, target_sparsity, targeted / kept counts and the kept
                                   fraction, kept entries per tensor, base model id and sha256
Bytes grow with the kept count (8 per entry), not with the base.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from app.training.base import TrainingError

WEIGHTS = Path("sparse_delta") / "delta.safetensors"
SUMMARY = Path("sparse_delta") / "sparse_delta.json"
INDICES, VALUES = ".delta_indices", ".delta_values"


def add_at(param: torch.Tensor, indices: torch.Tensor, values: torch.Tensor) -> None:
    """param.flat[indices] += values, summed in float32 as training's forward does (base + δ)."""
    flat, where = param.data.view(-1), indices.long()
    flat[where] = (flat[where].float() + values.to(flat.device)).to(flat.dtype)


def _fits(indices: torch.Tensor, values: torch.Tensor, param: torch.Tensor) -> bool:
    return indices.numel() == values.numel() and (
        indices.numel() == 0 or (int(indices.min()) >= 0 and int(indices.max()) < param.numel()))


def apply_sparse_delta(model: torch.nn.Module, artifact_dir: Path) -> torch.nn.Module:
    """Add the artifact's sparse delta to `model` (the base with a fresh head) and load the head;
    refuses tensors the base lacks, other head shapes and indices past a tensor's end."""
    tensors, params = load_file(Path(artifact_dir) / WEIGHTS), dict(model.named_parameters())
    sparse = sorted(k[:-len(INDICES)] for k in tensors if k.endswith(INDICES))
    dense = {k: v for k, v in tensors.items() if not k.endswith((INDICES, VALUES))}
    wrong = [k for k in sparse if k not in params or not _fits(tensors[k + INDICES], tensors[k + VALUES], params[k])]
    wrong += [k for k, v in dense.items() if k not in params or params[k].shape != v.shape]
    if wrong:
        raise TrainingError(f"{WEIGHTS} does not fit this base model: it names tensors the base lacks or shapes "
                            f"differently: {wrong[:5]}; use the base model it was trained on.",
                            code="base_model_mismatch")
    with torch.no_grad():
        for name, tensor in dense.items():
            params[name].copy_(tensor)
        for name in sparse:
            add_at(params[name], tensors[name + INDICES], tensors[name + VALUES])
    return model
