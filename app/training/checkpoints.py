"""Checkpoints that resume exactly: trainable weights, optimizer, scheduler, RNG and data position.

Layout of `checkpoint_dir/step-00000123/`:
  trainable.safetensors  parameters with requires_grad (frozen base weights come from the base model)
  optimizer.pt           optimizer + LR scheduler state (tensors and plain values only)
  rng.pt / rng.json      torch (+ CUDA) generator states / python and numpy states
  state.json             {"step", "epoch", "batch_in_epoch", "trained_tokens", "flops"} (+ the run's tags,
                         e.g. the LP-FT phase, and early stopping's counters when on)
  extra.safetensors      only when the run's objective has state (e.g. SMART's momentum teacher)
  COMPLETE               written last
Everything is written into a `.step-….tmp` sibling, fsynced, then renamed into place, so a
half-written checkpoint is never picked up. The newest KEEP complete checkpoints are kept.
Every file loads with `torch.load(weights_only=True)`: no pickled code runs on resume.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from app.fsio import fsync_tree, replace_dir

COMPLETE = "COMPLETE"
KEEP = 2


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that train; what a checkpoint needs beyond the base model."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def copy_into(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Put saved trainable weights (by parameter name) back into `model`, on its device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(device))


def _torch_save(obj: Any, path: Path) -> None:
    """torch.save through a Python file, so a full disk surfaces as OSError(ENOSPC) in the error's
    context (given a path, torch reports only "unexpected pos")."""
    with open(path, "wb") as out:
        torch.save(obj, out)


EXTRA = "extra.safetensors"


def save_checkpoint(checkpoint_dir: Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                    state: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `step-{step:08d}` atomically (tmp dir, fsync, rename) and prune older checkpoints; `extra`:
    tensors beyond the model's that the run needs back on resume."""
    final = checkpoint_dir / f"step-{step:08d}"
    tmp = checkpoint_dir / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(trainable_state(model), tmp / "trainable.safetensors")
        if extra:
            save_file({name: t.detach().cpu().contiguous() for name, t in extra.items()}, tmp / EXTRA)
        _torch_save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        _torch_save({"torch": torch.get_rng_state(),
                     "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "rng.pt")
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, py_state, gauss_next = random.getstate()
        (tmp / "rng.json").write_text(json.dumps({
            "python": [version, list(py_state), gauss_next],
            "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}))
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}))
        (tmp / COMPLETE).write_text("ok")
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk must not stay full of a dead checkpoint
        raise
    replace_dir(tmp, final)
    for old in complete_checkpoints(checkpoint_dir)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (`.tmp` dirs and ones without COMPLETE are skipped)."""
    if not checkpoint_dir.is_dir():
        return []
    found = [p for p in checkpoint_dir.glob("step-*") if (p / COMPLETE).is_file() and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest checkpoint a job can resume from, or None."""
    found = complete_checkpoints(checkpoint_dir)
    return found[-1] if found else None


def load_extra_state(path: Path) -> dict[str, torch.Tensor]:
    """The `extra` tensors saved with a checkpoint (empty when it has none)."""
    return load_file(path / EXTRA) if (path / EXTRA).is_file() else {}


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore everything saved by `save_checkpoint`; returns the saved loop state.

    Raises ValueError when the checkpoint is incomplete or was written for other trainable
    parameters (another method or other settings).
    """
    if not (path / COMPLETE).is_file():
        raise ValueError(f"checkpoint {path.name} is incomplete (no {COMPLETE} marker)")
    weights = load_file(path / "trainable.safetensors")
    expected = trainable_state(model)
    if set(weights) != set(expected) or any(weights[k].shape != v.shape for k, v in expected.items()):
        raise ValueError(f"checkpoint {path.name} does not match the model's trainable parameters")
    copy_into(model, weights)
    device = next(model.parameters()).device
    opt = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    states = json.loads((path / "rng.json").read_text())
    version, py_state, gauss_next = states["python"]
    random.setstate((version, tuple(py_state), gauss_next))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return json.loads((path / "state.json").read_text())
