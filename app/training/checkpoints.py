"""Checkpoints that resume exactly: trainable weights, optimizer, scheduler, RNG and data position.

Written into a `.tmp` sibling, fsynced, marked COMPLETE and renamed, so a half-written checkpoint
is never picked up.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

COMPLETE = "COMPLETE"
KEEP = 2


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def _fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(checkpoint_dir: Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                    state: dict[str, Any]) -> Path:
    final = checkpoint_dir / f"step-{step:08d}"
    tmp = checkpoint_dir / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}))
    (tmp / COMPLETE).write_text("ok")
    _fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in complete_checkpoints(checkpoint_dir)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    if not checkpoint_dir.is_dir():
        return []
    found = [p for p in checkpoint_dir.glob("step-*") if (p / COMPLETE).is_file() and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    found = complete_checkpoints(checkpoint_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore everything saved by `save_checkpoint`; returns the saved loop state."""
    weights = load_file(path / "trainable.safetensors")
    expected = set(trainable_state(model))
    if set(weights) != expected:
        raise ValueError(f"checkpoint {path.name} does not match the model's trainable parameters")
    model.load_state_dict(weights, strict=False)
    opt = torch.load(path / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=False)
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / "state.json").read_text())
