"""Apply a SAID/DID artifact over a freshly loaded base classifier: rebuild P from the recorded seed,
write θ₀ + λ_i·P_i·θ' into the base tensors, copy the head (Aghajanyan et al. 2021)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from app.training.base import TrainingError
from app.training.strategies.said.projection import SPACE, Target, attach, bake
from app.training.strategies.said.strategy import CONFIG, FORMAT, WEIGHTS


def apply_said(model: torch.nn.Module, artifact_dir: Path) -> torch.nn.Module:
    """`model` with the artifact applied, as a plain model (no parametrization left)."""
    config = json.loads((Path(artifact_dir) / CONFIG).read_text())
    if config.get("format") != FORMAT:
        raise TrainingError(f"{CONFIG} has format {config.get('format')!r}; this tuneforge reads {FORMAT!r}.",
                            code="artifact_corrupted")
    weights = load_file(Path(artifact_dir) / WEIGHTS)
    targets = [Target(t["name"], tuple(t["shape"])) for t in config["tensors"]]
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    wrong = [t.name for t in targets if shapes.get(t.name) != t.shape]
    wrong += [n for n in config["head"] if shapes.get(n) != tuple(weights[n].shape)]
    if wrong:
        raise TrainingError(f"the SAID artifact names tensors the base model lacks or shapes differently: "
                            f"{sorted(wrong)[:5]}; use the base it was trained on ({config['base_model']['id']}).",
                            code="base_model_mismatch")
    space = attach(model, targets, config["d"], config["said"], config["projection_seed"])
    params = dict(model.named_parameters())
    with torch.no_grad():
        space.theta.copy_(weights[f"{SPACE}.theta"])
        if space.scales is not None:
            space.scales.copy_(weights[f"{SPACE}.scales"])
        for name in config["head"]:
            params[name].copy_(weights[name])
    return bake(model)
