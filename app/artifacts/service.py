"""A finished job's artifacts: rows exist only for files that were completely written."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import Conflict, NotFound, shown
from app.models import Artifact, Job


def job_artifact_dir(job: Job) -> Path:
    return get_settings().artifacts_dir / job.tenant_id / job.id


def list_artifacts(session: Session, job: Job) -> list[Artifact]:
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)))


def get_artifact(session: Session, job: Job, name: str) -> tuple[Artifact, Path]:
    artifact = session.scalar(select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name))
    root = job_artifact_dir(job).resolve()
    path = (root / name).resolve() if artifact else None
    if artifact is None or path is None or not path.is_relative_to(root) or not path.is_file():
        raise NotFound(f"Job {job.id} has no artifact named {shown(name)}.", param="name")
    return artifact, path


def artifact_files(session: Session, job: Job) -> list[tuple[Artifact, Path]]:
    """Every artifact of `job` with its file, for the whole-folder download; 409 before it has any (the
    job exists: asking again once it succeeded helps)."""
    rows = list_artifacts(session, job)
    if not rows:
        raise Conflict(f"Job {job.id} has no artifacts yet (status {job.status}); they appear when it succeeds.",
                       param="job_id", code="artifacts_not_ready")
    root = job_artifact_dir(job).resolve()
    return [(row, (root / row.name).resolve()) for row in rows]
