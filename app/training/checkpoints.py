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
Every file loads with `torch.load(weights_only=True)`: no pickled code runs on resume. A sharded model's
(FSDP) files are the same whole tensors, gathered onto rank 0, which alone writes and reads them (its AdamW
state is keyed by parameter name): app.training.sharding.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from app.fsio import fsync_tree, replace_dir
from app.training.sharding import (broadcast_object, full_optimizer_state, full_trainable, is_sharded, load_full,
                                   load_full_optimizer_state, writes)

COMPLETE = "COMPLETE"
KEEP = 2


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that train; what a checkpoint needs beyond the base model. A sharded
    model's are gathered whole onto rank 0 (a collective; {} on the other ranks: app.training.sharding)."""
    if is_sharded(model):
        return full_trainable(model)
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def copy_into(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Put saved trainable weights (by parameter name) back into `model`, on its device; a sharded model
    takes rank 0's (a collective; the other ranks pass {})."""
    if is_sharded(model):
        load_full(model, weights)
        return
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
    weights = trainable_state(model)
    # a sharded AdamW's state gathered whole, keyed by name (none yet before the first step: as unsharded)
    optimizer_state = full_optimizer_state(model, optimizer) if is_sharded(model) and optimizer.state \
        else optimizer.state_dict()
    if not writes(model):  # a sharded model's ranks > 0 gathered nothing: rank 0 writes
        return final
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(weights, tmp / "trainable.safetensors")
        if extra:
            save_file({name: t.detach().cpu().contiguous() for name, t in extra.items()}, tmp / EXTRA)
        _torch_save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
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


def _load_sharded(path: Path, model: torch.nn.Module, optimizer, scheduler) -> None:
    """Rank 0 reads the whole weights and AdamW state; every rank takes its shards of them (app.training.sharding)."""
    whole = writes(model)
    copy_into(model, load_file(path / "trainable.safetensors") if whole else {})
    opt = torch.load(path / "optimizer.pt", weights_only=True) if whole else {}
    scheduler_state, stepped = broadcast_object((opt["scheduler"], bool(opt["optimizer"]["state"])) if whole else None)
    if stepped:  # before the first step there is no state, and a fresh optimizer is the saved one
        load_full_optimizer_state(model, optimizer, opt["optimizer"] if whole else {})
    scheduler.load_state_dict(scheduler_state)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore everything saved by `save_checkpoint`; returns the saved loop state.

    Raises ValueError when the checkpoint is incomplete or was written for other trainable
    parameters (another method or other settings).
    """
    if not (path / COMPLETE).is_file():
        raise ValueError(f"checkpoint {path.name} is incomplete (no {COMPLETE} marker)")
    with safe_open(path / "trainable.safetensors", "pt") as saved:  # shapes only: every rank decides alike
        shapes = {name: tuple(saved.get_slice(name).get_shape()) for name in saved.keys()}  # noqa: SIM118
    if shapes != {name: tuple(p.shape) for name, p in model.named_parameters() if p.requires_grad}:
        raise ValueError(f"checkpoint {path.name} does not match the model's trainable parameters")
    if is_sharded(model):
        _load_sharded(path, model, optimizer, scheduler)
    else:
        copy_into(model, load_file(path / "trainable.safetensors"))
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
