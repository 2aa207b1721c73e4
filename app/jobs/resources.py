"""What a job needs to run on, and the Celery queue (resource class) that takes it there.

A job may say `resources: {"gpus": N, "gpu_type": "h100"}` (or, on CPU, `{"processes": N}`; with N >= 2,
`"sharding": "fsdp"` shards full fine-tuning's model over the N processes: app.training.sharding); a job that
says nothing is estimated: its training FLOPs per optimizer step, (6 for full fine-tuning, else 4) ×
parameters × batch_size × max_length (Kaplan et al. 2020's 6·N·T; parameter-efficient methods skip the
weight gradients of the frozen base), sends it to the GPU class above `gpu_route_above_flops` (set only
where GPU workers run; unset, only jobs that ask for GPUs go there).

Classes and their queues: `cpu` → queue_name (shared with exports and corpus indexing), `gpu` →
`<queue_name>.gpu`, `gpu-<type>` → `<queue_name>.gpu-<type>` (types listed in gpu_types), and a job on
N > 1 GPUs → `<queue_name>.gpu.x<N>` (`-<type>` suffixed when a type is asked), taken by workers started
with `--gpus-per-job N`. The class is decided once, at submission, and stored in the job's `method` JSON
(`method.resources`), so a job re-queued after a lost worker goes back to the same class.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.config import get_settings

MAX_DEVICES = 64


class Resources(BaseModel):
    """The request's `resources` object."""

    model_config = ConfigDict(extra="forbid")

    gpus: int | None = Field(None, ge=0, le=MAX_DEVICES, description=(
        "GPUs the job trains on (one process per GPU under torchrun, data parallel); 0: CPU only."))
    gpu_type: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$", description=(
        "A GPU type the service lists (gpu_types, e.g. h100); the job waits for a worker with that GPU."))
    processes: int | None = Field(None, ge=1, le=MAX_DEVICES, description=(
        "CPU jobs only: training processes on the worker (torchrun with the gloo backend, data parallel)."))
    sharding: Literal["none", "fsdp"] | None = Field(None, description=(
        "fsdp: each of the job's processes (gpus or processes >= 2) holds 1/N of the weights, gradients and "
        "AdamW state (FSDP2), for models whose full fine-tuning does not fit one device; method supervised only. "
        "none (the default): every process holds the whole model."))

    def problem(self) -> tuple[str, str] | None:
        """(param, message) when the fields contradict each other. Checked after the request's names resolve
        (a 404 first), as the schema cannot say it."""
        if self.gpu_type is not None and not self.gpus:
            return "resources.gpu_type", "gpu_type needs gpus >= 1; give gpus too"
        if self.processes is not None and self.gpus:
            return "resources.processes", "processes is for CPU jobs; a GPU job runs one process per GPU (gpus)"
        if self.sharding == "fsdp" and (self.gpus or self.processes or 1) < 2:
            return "resources.sharding", ("fsdp shards the model over several processes; ask for gpus >= 2 (or "
                                          "processes >= 2 on CPU), or leave sharding out")
        return None


def queue_for(resource_class: str) -> str:
    """The Celery queue of a resource class (`cpu`, `gpu`, `gpu-<type>`, `gpu.x<N>[-<type>]`)."""
    base = get_settings().queue_name
    return base if resource_class == "cpu" else f"{base}.{resource_class}"


def gpu_class(gpus: int, gpu_type: str | None) -> str:
    """The class of a job on `gpus` GPUs of `gpu_type` (None: any)."""
    kind = f"-{gpu_type}" if gpu_type else ""
    return f"gpu{kind}" if gpus == 1 else f"gpu.x{gpus}{kind}"


def step_flops(parameters: int, full: bool, batch_size: int, max_length: int) -> float:
    return (6 if full else 4) * parameters * batch_size * max_length


def resolve_resources(given: Resources | None, parameters: int | None, full: bool, batch_size: int,
                      max_length: int) -> tuple[dict[str, Any], str]:
    """The job's stored resources ({"class", "gpus", "processes", "estimated_step_flops", "source"}) and an
    event message saying how they were chosen. Raises ValueError (param, message) for an unlisted gpu_type."""
    settings = get_settings()
    if given is not None and (problem := given.problem()):
        raise ValueError(*problem)
    flops = step_flops(parameters, full, batch_size, max_length) if parameters else None
    shown = f"{flops:.2e}" if flops else "unknown"
    if given is not None and given.gpu_type is not None and given.gpu_type.lower() not in settings.gpu_type_list:
        listed = ", ".join(settings.gpu_type_list) or "none are configured"
        raise ValueError("resources.gpu_type", f"gpu_type {given.gpu_type!r} is not a GPU type of this service "
                                               f"({listed}); leave it out to take any GPU")
    if given is not None and given.gpus is not None:
        gpus = given.gpus
        gpu_type = given.gpu_type.lower() if given.gpu_type else None
        source = "asked"
    else:
        threshold = settings.gpu_route_above_flops
        gpus = 1 if threshold is not None and flops is not None and flops > threshold else 0
        gpu_type, source = None, "estimated"
    processes = gpus if gpus else (given.processes if given is not None and given.processes else 1)
    resource_class = gpu_class(gpus, gpu_type) if gpus else "cpu"
    record = {"class": resource_class, "gpus": gpus, "processes": processes, "estimated_step_flops": flops,
              "source": source}
    if given is not None and given.sharding == "fsdp":  # absent: none (jobs stored before sharding existed too)
        record["sharding"] = "fsdp"
    where = (f"{gpus} GPU{'s' if gpus > 1 else ''}" + (f" ({gpu_type})" if gpu_type else "") if gpus else
             f"CPU, {processes} process{'es' if processes > 1 else ''}") + (", FSDP" if "sharding" in record else "")
    why = "as asked" if source == "asked" else (
        f"estimated {shown} training FLOPs per step" + (
            f" against the GPU threshold {settings.gpu_route_above_flops:.2e}" if settings.gpu_route_above_flops
            else "; no GPU threshold is set"))
    return record, f"Resources: {where}, queue class {resource_class} ({why})"


def parameter_count(tensors: dict[str, tuple[int, ...]] | None) -> int | None:
    return sum(math.prod(shape) for shape in tensors.values()) if tensors else None
