"""What a `tuneforge worker` host trains on, and so which queues its training processes consume.

torch is imported only inside `detect` (the API never calls it). A host with G GPUs runs G // gpus_per_job
training processes, each pinned to its own GPUs (CUDA_VISIBLE_DEVICES) and running one job at a time; a
CPU-only host runs one. Queues follow app.jobs.resources: a 1-GPU process takes `gpu` and the
`gpu-<type>` of each configured type its GPU's name contains; an N-GPU process takes `gpu.xN` (and
`gpu.xN-<type>`); a CPU process takes `cpu`. `--queues` / TUNEFORGE_WORKER_QUEUES overrides the classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.jobs.resources import gpu_class, queue_for


@dataclass(frozen=True)
class Devices:
    gpus: int
    name: str  # the first GPU's name ("" on CPU)


@dataclass(frozen=True)
class TrainingProcess:
    """One Celery training process: its GPUs (None: CPU) and its resource classes."""

    gpu_ids: tuple[int, ...] | None
    classes: tuple[str, ...]

    @property
    def queues(self) -> list[str]:
        return [queue_for(c) for c in self.classes]

    @property
    def label(self) -> str:
        return "cpu" if self.gpu_ids is None else "gpu" + "-".join(map(str, self.gpu_ids))


def detect() -> Devices:
    """The GPUs torch sees; a host without a GPU driver (no /proc/driver/nvidia, no ROCm /dev/kfd) is
    answered without importing torch, so a CPU worker starts seconds sooner."""
    if not (Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()):
        return Devices(0, "")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return Devices(count, torch.cuda.get_device_name(0) if count else "")


def plan(devices: Devices, gpu_types: list[str], gpus_per_job: int = 1,
         classes: list[str] | None = None) -> list[TrainingProcess]:
    """The training processes of a host with `devices`; `classes` (given) replaces the detected ones."""
    if devices.gpus == 0:
        return [TrainingProcess(None, tuple(classes or ["cpu"]))]
    if gpus_per_job > devices.gpus:
        raise ValueError(f"--gpus-per-job {gpus_per_job} exceeds the {devices.gpus} GPU(s) torch sees")
    own_types = [t for t in gpu_types if t in devices.name.lower().replace(" ", "")]
    detected = [gpu_class(gpus_per_job, None), *(gpu_class(gpus_per_job, t) for t in own_types)]
    groups = devices.gpus // gpus_per_job
    return [TrainingProcess(tuple(range(g * gpus_per_job, (g + 1) * gpus_per_job)), tuple(classes or detected))
            for g in range(groups)]
