"""Data-parallel training over several processes (torchrun): what the engine does differently on each rank.

Every rank runs the same strategy on the same data order; each optimizer step's batch is cut into one
shard per rank (then into micro-batches), each rank back-propagates its shard's share of the mean loss
(weighted by rows × world size), and one all-reduce averages the gradients (the loss rides along as one
more element), so every rank takes the same AdamW step a single process would take on the whole batch —
DistributedDataParallel's arithmetic (Li et al. 2020, "PyTorch Distributed"). We all-reduce one flat
buffer per step rather than wrapping the model in DistributedDataParallel because objectives and wrappers
(auxiliary MLM, SMART, the multitask mixture) call the bare model and its attributes; on a GPU node this
gives up DDP's overlap of communication with backward, which the benchmark (bench/gpu.py) measures. Here every
rank holds the whole model and AdamW state. With `resources.sharding` "fsdp" (full fine-tuning only) each rank
holds 1/N of them instead (app.training.sharding: FSDP2's `fully_shard`, Zhao et al. 2023, "PyTorch FSDP", per
encoder layer and root; gloo on CPU too): backward's reduce-scatter averages the gradients, so only the loss is
all-reduced here (`all_reduce_loss`), and checkpoints, best weights and the artifact are gathered whole onto
rank 0, which writes them, and broadcast back into shards on resume.

Phased methods (stability's LP-FT and seeds one after another, adaptive's DAPT/TAPT, multitask's mixture, then
a nested `then` method) run each phase through the engine, so each is data parallel; a rank > 0 works on a copy
of the job's checkpoint dir (workers/rank.py) and so resumes at the same phase and seed as rank 0. A finished
phase's output that the next phase reloads comes from rank 0 on every rank (`adopt_rank_zero_dir`): transformers'
save_pretrained writes only on rank 0 under torch.distributed (`should_save_on_this_rank`, and no argument
overrides it), so after a barrier a rank > 0 replaces its own copy, which lacks the weights, with rank 0's, the
very files a resumed job starts from.

Rank 0 alone polls for cancel/pause (and so refreshes nothing else: the worker beats the heartbeat) and
broadcasts the answer, writes events, checkpoints and the artifact; other ranks get a quiet sink and
private directories (workers/rank.py). gloo on CPU, nccl on GPU.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from app.training.batching import Batch

if TYPE_CHECKING:
    from app.training.base import TrainContext

_STOPS = [None, "cancel", "pause"]
RANK_ZERO_DIRS = "rank_zero_dirs"  # ctx.extra of a rank > 0: (its private checkpoint dir, rank 0's), workers/rank.py


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_process_group() -> torch.device:
    """Join torchrun's group (env:// rendezvous) and return this rank's device."""
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return torch.device("cpu")


def shard(batch: Batch, rank: int, world: int) -> tuple[Batch, bool]:
    """This rank's rows of `batch` and whether it has any: a rank without rows (a batch smaller than the
    world) runs the first row with weight 0, so the collectives still line up."""
    pieces = {key: torch.tensor_split(value, world)[rank] for key, value in batch.items()}
    if next(iter(pieces.values())).shape[0]:
        return pieces, True
    return {key: value[:1] for key, value in batch.items()}, False


def all_reduce_gradients(params: list[torch.Tensor], loss: float, world: int) -> float:
    """Average the gradients of `params` over the ranks (a missing gradient counts as zeros) and sum the
    ranks' loss shares; returns the whole batch's loss."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    device = grads[0].device
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [torch.tensor([loss], device=device)])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = (flat[offset:offset + n] / world).view_as(g).to(g.dtype)
        offset += n
    return float(flat[-1]) / world


def all_reduce_loss(loss: float, world: int, device: torch.device) -> float:
    """The whole batch's loss from the ranks' shares (the gradients were averaged elsewhere: FSDP)."""
    import torch.distributed as dist

    value = torch.tensor([loss], device=device)
    dist.all_reduce(value)
    return float(value) / world


def broadcast_stop(answer: str | None, device: torch.device) -> str | None:
    """Rank 0's cancel/pause answer, on every rank."""
    import torch.distributed as dist

    value = torch.tensor([_STOPS.index(answer)], device=device)
    dist.broadcast(value, src=0)
    return _STOPS[int(value)]


def adopt_rank_zero_dir(ctx: TrainContext, directory: Path) -> None:
    """Make `directory`, a finished phase's output under the job's checkpoint dir that every rank has just
    written, rank 0's on every rank: all ranks wait until rank 0's is in place, then a rank > 0 replaces its own
    (save_pretrained left out the weights there) with a copy of rank 0's, so the next phase loads the same files
    on every rank, as a resumed job does. Nothing happens in one process."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    if world == 1:
        return
    dist.barrier()
    if rank == 0:
        return
    private, shared = ctx.extra[RANK_ZERO_DIRS]
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(shared / directory.relative_to(private), directory)
