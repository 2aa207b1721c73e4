"""Several seeds side by side on one worker (Dodge et al. 2020's seeds, `stability.parallel_seeds`).

Child processes, not threads: a new head, dropout and the regularisers' noise draw from torch's global
generators, which every thread of a process shares, so seeds in threads would interleave their draws and
none would train as it does alone. A process per seed owns its generators and reproduces the seed's
sequential run (same seed, same curve; only the CPU threads' split of a matmul may differ in the last
bits). Children are spawned (CUDA cannot run in a forked child of a process that used it), each re-enters
the job's method with `ctx.extra[SEED_ROLE]` saying which seed and stage to train (seeds.py), so a method
needs nothing to run in parallel. Their events come back through a queue, tagged with the seed, and the
parent answers pause/cancel for them. A child dies with the worker (PR_SET_PDEATHSIG, and a parent check
every step): a SIGKILLed worker leaves no orphan writing checkpoints, and the re-queued job continues
every seed from its own last checkpoint, as the sequential run does.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import os
import queue
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from app.training.base import TrainContext, TrainingError
from app.training.distributed import rank_and_world

SEED_ROLE = "stability.seed_role"
STOPS = {1: "pause", 2: "cancel"}
POLL_SECONDS = 0.2
MEMORY_HEADROOM = 0.8  # of the free memory, what parallel seeds may fill (the estimate is rough)
PROCESS_BYTES = 2**29  # a child's own torch and transformers, before any model


@dataclasses.dataclass(frozen=True)
class SeedRole:
    """What a child trains: seed `seed` (index `index` in the plan) in stage "first" (up to the discard
    point) or "final" (as the `survivor`-th survivor, to the end), on `threads` torch threads."""

    index: int
    seed: int
    survivor: int | None
    threads: int


class QueueSink:
    """A child's ProgressSink: its seed's events (those tagged with `seed`; the method's set-up messages are
    the parent's already) go to the parent, which answers should_stop through `stop`."""

    def __init__(self, events: Any, stop: Any, parent: int):
        self.events, self.stop, self.parent = events, stop, parent

    def message(self, text: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        if data and "seed" in data:
            self.events.put(("message", (text, level, data)))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.events.put(("metrics", (step, values)))

    def checkpoint(self, step: int, path: Path, metrics: dict[str, float]) -> None:
        self.events.put(("checkpoint", (step, path, metrics)))

    def should_stop(self) -> str | None:
        if os.getppid() != self.parent:  # the worker died: stop writing checkpoints now
            os._exit(1)
        return STOPS.get(self.stop.value)

    def report(self, seed: int, outcome: dict[str, Any]) -> None:
        self.events.put(("result", (seed, outcome)))


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent check in should_stop remains
        pass


def child_main(ctx: TrainContext) -> None:
    """A child process: train ctx.extra[SEED_ROLE]'s seed and stage through the job's own method."""
    from app.training.registry import run_strategy

    _die_with_parent()
    role: SeedRole = ctx.extra[SEED_ROLE]
    torch.set_num_threads(role.threads)
    try:
        run_strategy(ctx)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent, which re-raises it
        known = isinstance(exc, TrainingError)
        ctx.sink.report(role.seed, {"error": {"message": str(exc), "code": exc.code if known else None,
                                              "param": exc.param if known else None, "type": type(exc).__name__,
                                              "traceback": traceback.format_exc()[-2000:]}})


def _parameter_count(path: Path) -> int:
    """Parameters of the base on disk (safetensors headers; else pytorch_model.bin's bytes / 4)."""
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        return sum(f.stat().st_size for f in Path(path).glob("*.bin")) // 4
    total = 0
    for file in files:
        with open(file, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def seed_bytes(ctx: TrainContext) -> int:
    """One seed's training memory, an upper bound: fp32 weights, their gradients and AdamW's two moments
    (16 bytes a parameter, as if all trained), the activations of one batch (Korthikanti et al. 2022:
    s·b·h·(34 + 5·a·s/h) bytes a layer in 16-bit, twice that in fp32; a cloze pattern is one more row) and
    the process itself."""
    config = json.loads((Path(ctx.base_model.path) / "config.json").read_text())
    hp = ctx.hyperparameters
    hidden, layers = config.get("hidden_size", 768), config.get("num_hidden_layers", 12)
    heads, length = config.get("num_attention_heads", 12), hp.max_length
    rows = hp.batch_size * len(getattr(ctx.settings, "patterns", None) or [None])
    activations = 2 * length * rows * hidden * (34 + 5 * heads * length / hidden) * layers
    return int(16 * _parameter_count(Path(ctx.base_model.path)) + activations + PROCESS_BYTES)


def free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def parallel_count(ctx: TrainContext, device: torch.device, setting: str | int, pending: int) -> tuple[int, str]:
    """How many seeds train at once, and why (for the event)."""
    if pending <= 1:
        return 1, "one seed left to train"
    if (world := rank_and_world()[1]) > 1:  # the job is data parallel already; the service refuses a count > 1
        return 1, f"auto: the job trains data parallel over {world} processes, so its seeds take turns"
    if setting != "auto":
        return min(int(setting), pending), f"parallel_seeds={setting}"
    need, free = seed_bytes(ctx), free_memory(device)
    fit = max(1, int(MEMORY_HEADROOM * free // max(1, need)))
    why = (f"auto: one seed needs about {need / 2**30:.2f} GiB, {free / 2**30:.1f} GiB free on {device.type} "
           f"holds {fit}")
    count = min(pending, fit)
    if device.type == "cpu":
        threads = torch.get_num_threads()
        count = min(count, threads)
        why += f"; {threads} CPU thread(s), at least one a seed"
    return count, why


def run_children(ctx: TrainContext, roles: list[SeedRole]) -> dict[int, dict[str, Any]]:
    """Train each role in its own process at once; forward their events; {seed: the child's outcome}."""
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    events, stop = mp.Queue(), mp.Value("i", 0)
    sink = QueueSink(events, stop, os.getpid())
    processes = {}
    for role in roles:
        child = dataclasses.replace(ctx, sink=sink, extra={**ctx.extra, SEED_ROLE: role})
        processes[role.seed] = mp.Process(target=child_main, args=(child,), daemon=True,
                                          name=f"tuneforge-seed-{role.seed}")
        processes[role.seed].start()
    outcomes: dict[int, dict[str, Any]] = {}
    finished = False
    try:
        while len(outcomes) < len(roles):
            _forward(ctx, events, outcomes)
            reason = ctx.sink.should_stop()
            if reason is not None and not stop.value:
                stop.value = {v: k for k, v in STOPS.items()}[reason]
            for seed, process in processes.items():
                if seed not in outcomes and not process.is_alive():
                    _forward(ctx, events, outcomes, wait=False)  # what it sent before exiting
                    if seed not in outcomes:
                        outcomes[seed] = {"error": {"message": f"the process of seed {seed} exited with code "
                                                               f"{process.exitcode}", "type": "ChildProcessError"}}
        finished = True
    finally:  # on an error here the children stop at once, as they would with the worker
        for process in processes.values():
            process.join(timeout=30 if finished else 0)
            if process.is_alive():
                process.kill()
                process.join()
    for seed, outcome in outcomes.items():
        if "error" in outcome:
            raise _failure(seed, outcome["error"])
    return outcomes


def _forward(ctx: TrainContext, events: Any, outcomes: dict[int, dict[str, Any]], wait: bool = True) -> None:
    """Pass the children's queued events to the job's sink (waiting up to POLL_SECONDS for the first); return
    after a training-progress event so the caller asks should_stop between steps, not after a burst of them."""
    deadline = time.monotonic() + (POLL_SECONDS if wait else 0.5)
    while True:
        try:
            kind, payload = events.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return
        if kind == "result":
            outcomes[payload[0]] = payload[1]
        else:
            getattr(ctx.sink, kind)(*payload)
            if kind == "metrics":
                return
        deadline = min(deadline, time.monotonic() + 0.01)


def _failure(seed: int, error: dict[str, Any]) -> Exception:
    if error.get("code"):
        return TrainingError(f"Seed {seed}: {error['message']}", code=error["code"], param=error.get("param"))
    return RuntimeError(f"seed {seed} failed in its process: {error['type']}: {error['message']}\n"
                        f"{error.get('traceback', '')}")
