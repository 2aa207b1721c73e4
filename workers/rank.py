"""One rank of a multi-process job: `torchrun --nproc_per_node=N -m workers.rank JOB WORKER STAGING RESULT`,
started by the worker's `execute` (workers/tasks/run_job.py) for a job whose resources ask for N > 1
processes (GPUs, or CPU processes).

Every rank reads the job from PostgreSQL and runs its strategy (app.training.distributed says how the
steps stay identical). Rank 0 reports through the job's DatabaseSink under the claiming worker's id (so
cancel and pause reach it, and a lost lease stops it), writes checkpoints and the artifact into the
staging dir, and leaves its TrainResult (or its error) as JSON in RESULT for the parent to publish. Other
ranks report nothing and write into private directories that are removed: a copy of the job's checkpoint
dir (so phases resume alike on every rank) and their own output dir.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from app.core.config import get_settings
from app.core.retry import with_db
from app.models import Job
from app.training.base import TrainingError
from app.training.distributed import RANK_ZERO_DIRS
from workers.checkpoint_mirror import mirror_for
from workers.progress import DatabaseSink, LeaseLost


class QuietSink:
    """The sink of ranks > 0: rank 0 alone reports and polls (its answer is broadcast)."""

    def message(self, text: str, level: str = "info", data: dict | None = None) -> None: ...
    def metrics(self, step: int, values: dict) -> None: ...
    def checkpoint(self, step: int, path: Path, metrics: dict) -> None: ...
    def should_stop(self) -> None:
        return None


def _private_checkpoints(shared: Path, resume_from: Path | None, private: Path) -> tuple[Path, Path | None]:
    """A rank > 0's checkpoint dir: a copy of the job's, so a phased job (LP-FT's probe, seeds.json, adaptive's
    finished phases and their `phase.json`, TLM's stages) resumes on every rank from where rank 0 resumes and
    every rank makes the same choices (skip a finished phase, train the same seed); its own writes, the same as
    rank 0's, go to the copy and are removed with it, but a phase finished in this attempt is replaced by rank 0's
    (app.training.distributed.adopt_rank_zero_dir). `resume_from` moves into the copy."""
    shutil.copytree(shared, private, dirs_exist_ok=True)
    if resume_from is not None and resume_from.is_relative_to(shared):
        resume_from = private / resume_from.relative_to(shared)
    return private, resume_from


def _train(job_id: str, worker: str, staging: Path, rank: int) -> dict[str, Any]:
    import torch.distributed as dist

    from app.training.lineage import record_lineage
    from app.training.registry import run_strategy
    from workers.tasks.run_job import build_context

    job = with_db(lambda session: session.get(Job, job_id))
    mirror = None
    if rank == 0:  # the parent worker restored the newest stored checkpoint already; rank 0 stores new ones
        mirror = mirror_for(job_id, get_settings().checkpoints_dir / job_id)
        ctx = build_context(job, DatabaseSink(job_id, worker, get_settings().stop_poll_interval, mirror), staging)
    else:
        private = staging.with_name(f"{staging.name}.rank{rank}")
        shutil.rmtree(private, ignore_errors=True)
        ctx = build_context(job, QuietSink(), private / "out")
        ctx.output_dir.mkdir(parents=True)
        shared = ctx.checkpoint_dir
        ctx.checkpoint_dir, ctx.resume_from = _private_checkpoints(shared, ctx.resume_from, private / "checkpoints")
        ctx.extra[RANK_ZERO_DIRS] = (ctx.checkpoint_dir, shared)  # finished phases come from rank 0's
    dist.barrier()  # no rank writes before every rank > 0 has its copy of the checkpoint dir
    try:
        result = run_strategy(ctx)
        if rank == 0 and result.status == "succeeded" and "lineage" in ctx.extra:
            record_lineage(staging, ctx.extra["lineage"])
        if mirror is not None and result.status in ("succeeded", "paused"):
            mirror.flush()
        return {"result": dataclasses.asdict(result)}
    finally:
        if mirror is not None:
            mirror.close(drop=True)
        if rank != 0:
            shutil.rmtree(staging.with_name(f"{staging.name}.rank{rank}"), ignore_errors=True)


def main(job_id: str, worker: str, staging: Path, result_path: Path) -> None:
    import torch.distributed as dist

    from app.training.distributed import init_process_group

    init_process_group()
    rank = dist.get_rank()
    try:
        outcome = _train(job_id, worker, staging, rank)
    except TrainingError as exc:
        outcome = {"error": {"code": exc.code, "message": exc.message, "param": exc.param}}
    except LeaseLost as exc:
        outcome = {"lease_lost": str(exc)}
    if rank == 0:
        result_path.write_text(json.dumps(outcome))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
