"""A finished job's artifacts: rows exist only for files that were completely written.

They live in the object store (app.core.object_store) under `artifacts/<tenant>/<job>/<name>`. With the
local default that is the job's artifact dir itself. With a remote store the worker uploads each file and
then a completion marker listing them, and only then commits the rows: a worker killed mid-upload leaves
no row (nothing listed, the job is re-queued and resumes) and no marker (no host fetches a half
artifact). A host that needs the files on disk (predictions, chains, exports) fetches them once, whole.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import Conflict, NotFound, shown
from app.core.object_store import get_store
from app.models import Artifact, Job


def local_artifact_dir(job: Job) -> Path:
    """Where this host keeps the job's artifact dir (in the local store: the artifact itself)."""
    return get_settings().artifacts_dir / job.tenant_id / job.id


def job_artifact_dir(job: Job) -> Path:
    """The job's artifact dir on this host, fetched whole from a remote store the first time it is asked
    for (a job without a complete upload yet: the path, which does not exist, as with the local store)."""
    path = local_artifact_dir(job)
    store = get_store()
    if store.remote and not path.is_dir():
        store.get_tree(store_key(path), path)
    return path


def store_key(path: Path) -> str:
    """The object key of a file or dir below the data directory (the local layout is the key layout)."""
    return path.relative_to(get_settings().data_dir).as_posix()


def upload_tree(root: Path, records: list[tuple[str, int, str]]) -> None:
    """Upload the files of `records` (name, bytes, sha256) below `root`, marker last; nothing to do in the
    local store, where `root` is already in place."""
    store = get_store()
    if store.remote:
        store.put_tree(store_key(root), root, records)


def withdraw(root: Path) -> None:
    """Remove an artifact dir that was never listed (cancelled or failed at the last moment), everywhere."""
    shutil.rmtree(root, ignore_errors=True)
    store = get_store()
    if store.remote:
        store.delete_prefix(store_key(root))


def list_artifacts(session: Session, job: Job) -> list[Artifact]:
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)))


def _key(job: Job, name: str) -> str | None:
    """The object key of artifact `name`, None for a name that climbs out of the job's dir."""
    root = local_artifact_dir(job).resolve()
    path = (root / name).resolve()
    return store_key(local_artifact_dir(job) / path.relative_to(root)) if path.is_relative_to(root) else None


def get_artifact(session: Session, job: Job, name: str) -> tuple[Artifact, str]:
    """The artifact row and its object key; 404 for a name the job has no complete file of."""
    artifact = session.scalar(select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name))
    key = _key(job, name) if artifact else None
    if artifact is None or key is None or get_store().size(key) is None:
        raise NotFound(f"Job {job.id} has no artifact named {shown(name)}.", param="name")
    return artifact, key


def artifact_files(session: Session, job: Job) -> list[tuple[Artifact, str]]:
    """Every artifact of `job` with its object key, for the whole-folder download; 409 before it has any
    (the job exists: asking again once it succeeded helps)."""
    rows = list_artifacts(session, job)
    if not rows:
        raise Conflict(f"Job {job.id} has no artifacts yet (status {job.status}); they appear when it succeeds.",
                       param="job_id", code="artifacts_not_ready")
    return [(row, key) for row in rows if (key := _key(job, row.name)) is not None]
