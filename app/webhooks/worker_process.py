"""The webhook delivery worker that `tuneforge worker` runs beside its training worker: a second Celery
worker process on the webhook queue, with a small thread pool, so deliveries go out while the
training worker is busy with a long job. It ends with its parent (on Linux even if the parent is killed)."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

from app.core.config import get_settings

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def start_delivery_worker(celery_app: str, loglevel: str) -> subprocess.Popen:
    """Start it; call before the parent starts threads (the child is set up between fork and exec)."""
    settings = get_settings()
    quiet = ["--quiet"] if settings.log_format == "json" else []  # no banner among the JSON lines
    args = [sys.executable, "-m", "celery", "-A", celery_app, *quiet, "worker", f"--loglevel={loglevel}",
            "--pool=threads", f"--concurrency={settings.webhook_concurrency}", "-Q", settings.webhook_queue,
            "-n", f"webhooks-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    return subprocess.Popen(args, preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def start_training_worker(celery_app: str, loglevel: str, queues: list[str], gpu_ids: tuple[int, ...] | None,
                          label: str) -> subprocess.Popen:
    """One training process of a multi-GPU host (app/core/devices.py): solo pool, one job at a time, pinned
    to its GPUs; it ends with its parent like the delivery worker."""
    quiet = ["--quiet"] if get_settings().log_format == "json" else []
    env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpu_ids))} if gpu_ids is not None else {}))
    args = [sys.executable, "-m", "celery", "-A", celery_app, *quiet, "worker", f"--loglevel={loglevel}",
            "--pool=solo", "--concurrency=1", "-Q", ",".join(queues), "-n", f"train-{label}-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle"]
    return subprocess.Popen(args, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def stop(proc: subprocess.Popen | None, grace: float = 15) -> None:
    """SIGTERM (Celery's warm shutdown: the attempt in flight finishes), SIGKILL after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
