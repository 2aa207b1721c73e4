"""Dense task deltas: the tensors a method changed, by state_dict name, over the shared base.

Methods that train a subset of the base's own tensors (BitFit's biases, partial fine-tuning's top
layers) ship only those tensors plus the weights the base lacked (the new head, sometimes a pooler),
in `delta/delta.safetensors`; `apply_delta` puts them back over a freshly loaded base.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from app.training.base import TrainContext, TrainingError
from app.training.checkpoints import trainable_state

DELTA = Path("delta") / "delta.safetensors"
HEAD_PREFIXES = ("classifier.", "score.", "pre_classifier.")


def is_new_or_head(name: str, new_parameters: set[str]) -> bool:
    """Weights that start random (absent from the base, or a task head): they always ship."""
    return name in new_parameters or name.startswith(HEAD_PREFIXES)


def save_delta(model: torch.nn.Module, tokenizer, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
    """Trainable tensors plus every new/head tensor, tagged with the base model's id and hash."""
    (output_dir / DELTA).parent.mkdir(parents=True, exist_ok=True)
    head = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
            if is_new_or_head(n, new_parameters)}
    save_file({**trainable_state(model), **head}, output_dir / DELTA,
              metadata={"base_model": ctx.base_model.id, "base_model_sha256": ctx.base_model.sha256})


def load_delta(artifact_dir: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The delta's tensors by state_dict name; refuses names `model` lacks and shapes it differs in."""
    delta, state = load_file(artifact_dir / DELTA), model.state_dict()
    wrong = [k for k, v in delta.items() if k not in state or state[k].shape != v.shape]
    if wrong:
        raise TrainingError(f"the delta names tensors the base model lacks or shapes it differently: "
                            f"{sorted(wrong)[:5]}", code="base_model_mismatch")
    return delta


def apply_delta(model: torch.nn.Module, artifact_dir: Path) -> torch.nn.Module:
    """Copy the delta's tensors into `model` (the base with a fresh head); refuses foreign shapes."""
    delta, state = load_delta(artifact_dir, model), model.state_dict()
    with torch.no_grad():
        for name, tensor in delta.items():
            state[name].copy_(tensor)
    return model
