"""FSDP on several processes (`resources.sharding: "fsdp"`): each rank holds 1/N of the weights, gradients and
AdamW state instead of all of them.

`shard` applies torch's FSDP2 `fully_shard` (Zhao et al. 2023, "PyTorch FSDP") to each repeated block of the
model (the classes transformers lists in `_no_split_modules`: the embeddings and each encoder layer), then to
the root: forward and backward all-gather one block's weights at a time and free them after, backward
reduce-scatters each block's gradients, averaged over the ranks as app.training.distributed's all-reduce
averages them, so the step is the one a single process takes. Parameters become DTensors under the same
names (AdamW groups are rebuilt by name); torch.nn.utils.clip_grad_norm_ on them clips by the global norm.

Whatever is saved is whole, so a sharded job's files are a one-process job's: `full_state` / `full_optimizer_state`
gather every tensor onto rank 0's CPU (torch.distributed.checkpoint.state_dict, full_state_dict + cpu_offload;
the other ranks get nothing), rank 0 alone writes (`writes`), and `load_full` / `load_full_optimizer_state`
broadcast rank 0's copy into every rank's shards. The optimizer's saved state is keyed by parameter name.
These calls are collectives: every rank makes them at the same point of the same loop.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from app.training.distributed import rank_and_world


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def writes(model: torch.nn.Module) -> bool:
    """Whether this process reads and writes whole tensors: every process of an unsharded model, rank 0 of a
    sharded one."""
    return not is_sharded(model) or rank_and_world()[0] == 0


def shard(model: torch.nn.Module, groups: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Shard `model` in place over the process group; returns the AdamW `groups` (over its parameters) rebuilt
    over the sharded parameters."""
    from torch.distributed.fsdp import fully_shard

    names = {id(p): name for name, p in model.named_parameters()}
    kept = [[names[id(p)] for p in group["params"]] for group in groups or []]
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in reversed([m for m in model.modules() if type(m).__name__ in blocks and m is not model]):
        fully_shard(module)  # innermost first, as nested units must be
    fully_shard(model)
    if groups is None:
        return None
    params = dict(model.named_parameters())
    return [{**group, "params": [params[name] for name in group_names]} for group, group_names in zip(groups, kept)]


_GATHER = {"full_state_dict": True, "cpu_offload": True}
_SCATTER = {"full_state_dict": True, "broadcast_from_rank0": True}


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The sharded model's whole state dict on rank 0's CPU ({} on the other ranks)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(**_GATHER))


def full_trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """full_state's parameters that train."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: t.contiguous() for name, t in full_state(model).items() if name in trainable}


def load_full(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Rank 0's `weights` (some of the model's, by name; the other ranks pass {}) into every rank's shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, weights, options=StateDictOptions(**_SCATTER, strict=False))


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """AdamW's whole state (keyed by parameter name) on rank 0's CPU ({} on the other ranks)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(**_GATHER))


def load_full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Rank 0's saved optimizer `state` (the other ranks pass {}) into every rank's shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(**_SCATTER))


def broadcast_object(value: Any) -> Any:
    """Rank 0's `value` (plain data) on every rank."""
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def save_pretrained(model: torch.nn.Module, path: Path) -> None:
    """`model.save_pretrained(path)`; a sharded model's whole weights are gathered first (a collective) and
    rank 0 writes them, naming the model's own class in config.json (FSDP renames it FSDP<class>)."""
    if not is_sharded(model):
        model.save_pretrained(path)
        return
    state = full_state(model)
    if not writes(model):
        return
    model.save_pretrained(path, state_dict=state)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "architectures": [plain_type(model).__name__]},
                                                 indent=2, sort_keys=True) + "\n")


def plain_type(model: torch.nn.Module) -> type:
    """The model's class, not FSDP's subclass of it."""
    from torch.distributed.fsdp import FSDPModule

    return next(cls for cls in type(model).__mro__ if not issubclass(cls, FSDPModule))
