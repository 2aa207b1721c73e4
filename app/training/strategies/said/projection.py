"""θ_i = θ₀,i + λ_i·P_i θ' on a model, via torch.nn.utils.parametrize (Aghajanyan et al. 2021, SAID;
without λ it is DID, Li et al. 2018's θ = θ₀ + Pθ_d).

θ' (d' = d - m under SAID, d under DID) and λ (m, one per projected tensor) live once on the model
as `said.theta` / `said.scales`; each projected tensor's parametrization holds only a reference to
them plus its own Fastfood parts (non-persistent buffers, so they follow `.to(device)` but never
reach a checkpoint). The base tensors stay frozen as `…parametrizations.<name>.original`, so the
shared loop's checkpoints (parameters with requires_grad) hold exactly θ', λ and the head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn.utils import parametrize

from app.training.delta import is_new_or_head
from app.training.strategies.said.fastfood import FastfoodParts, block_size, draw_parts, fastfood

SPACE = "said"  # the model attribute holding θ' and λ


@dataclass(frozen=True)
class Target:
    """A base tensor that is projected: its state-dict name and shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def select_targets(model: torch.nn.Module, new_parameters: set[str], include_embeddings: bool) -> list[Target]:
    """Every base tensor but the new head (trained whole) and, unless asked, the embedding tables
    (the word embeddings alone are ~60% of MiniLM and move little in fine-tuning)."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters(False)}
    return [Target(name, tuple(p.shape)) for name, p in model.named_parameters()
            if not is_new_or_head(name, new_parameters) and (include_embeddings or id(p) not in embeddings)]


def shared_dimension(d: int, n_targets: int, said: bool) -> int:
    """d': SAID spends one of the d trained numbers on each tensor's λ_i, DID none."""
    return d - n_targets if said else d


class IntrinsicSpace(torch.nn.Module):
    """θ' (starts at 0, so training starts at θ₀) and, under SAID, λ (starts at 1: at 0 neither θ'
    nor λ would get a gradient)."""

    def __init__(self, targets: list[Target], d: int, said: bool, seed: int):
        super().__init__()
        d_shared = shared_dimension(d, len(targets), said)
        if d_shared < 1:
            raise ValueError(f"d={d} leaves no shared dimension for {len(targets)} tensors")
        self.theta = torch.nn.Parameter(torch.zeros(d_shared))
        self.scales = torch.nn.Parameter(torch.ones(len(targets))) if said else None
        self.targets, self.d, self.seed = targets, d, seed
        self.block_size = block_size(d_shared)


class ProjectedDelta(torch.nn.Module):
    """The parametrization of one base tensor: weight = θ₀ + λ_i·P_i θ'."""

    def __init__(self, space: IntrinsicSpace, index: int, parts: FastfoodParts):
        super().__init__()
        self._space = (space,)  # a reference, not a submodule: θ' and λ are registered once, on the model
        self.index, self.scale, self.numel = index, parts.scale, parts.numel
        for name, tensor in parts.tensors().items():
            self.register_buffer(name, tensor, persistent=False)

    def delta(self) -> torch.Tensor:
        space = self._space[0]
        scale = self.scale if space.scales is None else space.scales[self.index] * self.scale
        return fastfood(space.theta, self.signs, self.permutation, self.gauss, scale, self.numel)

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return base + self.delta().view(base.shape).to(base.dtype)


def attach(model: torch.nn.Module, targets: list[Target], d: int, said: bool, seed: int) -> IntrinsicSpace:
    """Register θ', λ as `model.said` and parametrize every target; the random parts are drawn in
    target order from one CPU generator seeded with `seed`, so the same arguments rebuild P exactly."""
    if hasattr(model, SPACE):
        raise ValueError(f"the model already has an attribute {SPACE!r}")
    device = next(model.parameters()).device
    space = IntrinsicSpace(targets, d, said, seed).to(device)
    model.add_module(SPACE, space)
    generator = torch.Generator().manual_seed(seed)
    for index, target in enumerate(targets):
        owner, _, attr = target.name.rpartition(".")
        module = model.get_submodule(owner)
        getattr(module, attr).requires_grad_(False)
        parts = draw_parts(target.numel, space.block_size, generator)
        parametrize.register_parametrization(module, attr, ProjectedDelta(space, index, parts).to(device))
    return space


def bake(model: torch.nn.Module) -> torch.nn.Module:
    """Write θ₀ + λ_i·P_i θ' into the plain tensors and drop the parametrizations and `model.said`:
    the same computation the trained model ran, so its outputs are reproduced exactly."""
    space: IntrinsicSpace = getattr(model, SPACE)
    with torch.no_grad():
        for target in space.targets:
            owner, _, attr = target.name.rpartition(".")
            parametrize.remove_parametrizations(model.get_submodule(owner), attr, leave_parametrized=True)
    delattr(model, SPACE)
    return model
