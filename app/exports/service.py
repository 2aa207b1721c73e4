"""Merged exports of finished jobs: one per job, merged by a worker (the API never imports torch).

The API decides what may be exported (`export_refusal` reads only the manifest) and queues it; the
worker claims the row with a conditional UPDATE, writes `merged/` in a staging dir, renames it into
the job's artifact dir and records its files as `merged/…` artifact rows in the same transaction
that marks the export succeeded. A repeated request returns the same row; it re-sends a queued
export the broker may have lost, and re-queues a failed one or one whose worker stopped beating.
Without a request, the maintenance pass does the same for a lost or abandoned one (recovery.py).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app import leases
from app.artifacts.service import job_artifact_dir
from app.core.errors import BadRequest, Conflict, NotFound
from app.core.ids import new_id
from app.jobs.service import get_job
from app.models import Artifact, ExportStatus, JobExport
from app.models.base import utcnow
from app.models.job import JobStatus
from app.training.export import export_refusal

MERGED = "merged"  # the export's directory in the job's artifact dir, and its artifacts' name prefix


def _check_exportable(session: Session, tenant_id: str, job_id: str) -> None:
    job = get_job(session, tenant_id, job_id)
    if job.status != JobStatus.succeeded:
        raise Conflict(f"Job {job.id} is {job.status}; only succeeded jobs can be exported. Wait until it "
                       f"succeeds (GET /v1/fine_tuning/jobs/{job.id}), then ask again.", param="fine_tuning_job_id")
    try:
        reason = export_refusal(job_artifact_dir(job))
    except (OSError, ValueError, KeyError) as exc:
        raise Conflict(f"Job {job.id}'s artifact is missing or unreadable ({type(exc).__name__}), so it cannot be "
                       "merged; train the job again.", param="fine_tuning_job_id", code="artifact_missing") from exc
    if reason:
        raise BadRequest(reason, param="fine_tuning_job_id", code="export_not_supported")


def _needs_sending(export: JobExport) -> bool:
    """A new, failed or abandoned export, or a queued one not sent for `resend_after` seconds."""
    if export.status == ExportStatus.failed:
        return True
    if export.status == ExportStatus.queued:
        return export.enqueued_at is None or export.enqueued_at < leases.resend_cutoff()
    return export.status == ExportStatus.running and leases.beat_is_stale(export)


def request_export(session: Session, tenant_id: str, job_id: str) -> tuple[JobExport, bool]:
    """The job's export (created on the first request) and whether it must be sent to a worker now;
    the caller commits, then sends. It is recorded as sent already, so the maintenance pass does not
    send it too; the caller calls `mark_unsent` if the broker refuses it, and the pass sends it later."""
    _check_exportable(session, tenant_id, job_id)
    session.execute(insert(JobExport).values(id=new_id("ftexp-"), job_id=job_id, tenant_id=tenant_id,
                                             status=ExportStatus.queued, attempt=0)
                    .on_conflict_do_nothing(index_elements=["job_id"]))
    export = session.scalar(select(JobExport).where(JobExport.job_id == job_id).with_for_update())
    send = _needs_sending(export)
    if send:
        export.status, export.error, export.worker_id, export.enqueued_at = ExportStatus.queued, None, None, utcnow()
    session.flush()
    return export, send


def mark_unsent(session: Session, export_id: str) -> None:
    """The broker refused the export's message: the maintenance pass sends it (app/exports/recovery.py)."""
    session.execute(update(JobExport).where(JobExport.id == export_id, JobExport.status == ExportStatus.queued)
                    .values(enqueued_at=None))


def get_export(session: Session, tenant_id: str, job_id: str) -> JobExport:
    job = get_job(session, tenant_id, job_id)
    export = session.scalar(select(JobExport).where(JobExport.job_id == job.id))
    if export is None:
        raise NotFound(f"Job {job.id} has no export yet; POST /v1/fine_tuning/jobs/{job.id}/export to create one.",
                       param="fine_tuning_job_id")
    return export


def merged_files(session: Session, export: JobExport) -> list[Artifact]:
    if export.status != ExportStatus.succeeded:
        return []
    return list(session.scalars(select(Artifact).where(Artifact.job_id == export.job_id,
                                                       Artifact.name.startswith(f"{MERGED}/"))
                                .order_by(Artifact.name)))


def export_object(session: Session, export: JobExport) -> dict[str, Any]:
    ts = lambda v: int(v.timestamp()) if v else None  # noqa: E731
    return {"object": "fine_tuning.job.export", "id": export.id, "fine_tuning_job_id": export.job_id,
            "status": export.status, "created_at": ts(export.created_at), "finished_at": ts(export.finished_at),
            "bytes": export.bytes, "error": export.error,
            "files": [{"name": a.name, "bytes": a.bytes, "sha256": a.sha256} for a in merged_files(session, export)]}


# --- the worker ----------------------------------------------------------------------------------

def claim(session: Session, export_id: str, worker: str) -> JobExport | None:
    """queued → running for this worker; None if it is not queued (a duplicate or stale message)."""
    now = utcnow()
    return session.scalar(update(JobExport).where(JobExport.id == export_id, JobExport.status == ExportStatus.queued)
                          .values(status=ExportStatus.running, worker_id=worker, heartbeat_at=now, started_at=now,
                                  attempt=JobExport.attempt + 1).returning(JobExport))


def complete(session: Session, export_id: str, worker: str, rows: list[tuple[str, int, str]]) -> bool:
    """running → succeeded and the `merged/…` artifact rows, together; False if this worker lost it."""
    export = session.scalar(update(JobExport).where(
        JobExport.id == export_id, JobExport.status == ExportStatus.running, JobExport.worker_id == worker,
    ).values(status=ExportStatus.succeeded, finished_at=utcnow(), bytes=sum(b for _, b, _ in rows))
        .returning(JobExport))
    if export is None:
        return False
    session.execute(delete(Artifact).where(Artifact.job_id == export.job_id, Artifact.name.startswith(f"{MERGED}/")))
    session.add_all(Artifact(job_id=export.job_id, name=n, bytes=b, sha256=h) for n, b, h in rows)
    return True


def fail(session: Session, export_id: str, worker: str, code: str, message: str) -> None:
    session.execute(update(JobExport).where(JobExport.id == export_id, JobExport.worker_id == worker,
                                            JobExport.status == ExportStatus.running)
                    .values(status=ExportStatus.failed, finished_at=utcnow(),
                            error={"code": code, "message": message, "param": None}))
