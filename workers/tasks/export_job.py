"""The export task: merge a finished job's artifact over its base into plain weights, publish atomically."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from celery import shared_task

from app.artifacts.service import job_artifact_dir, upload_tree
from app.base_models.cache import models_held
from app.base_models.service import local_model_dir
from app.core.config import get_settings
from app.core.queue import EXPORT_TASK
from app.core.retry import with_db
from app.exports import service
from app.exports.service import MERGED
from app.fsio import fsync_tree, replace_dir
from app.models import BaseModel, Job, JobExport
from app.training.artifacts import file_records, read_manifest
from app.training.base import TrainingError
from workers.progress import Heartbeat
from workers.tasks.run_job import out_of_space, worker_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Work:
    """What one claimed export needs, read in the claiming transaction."""

    export_id: str
    attempt: int
    artifact_dir: Path
    base_id: str
    base_dir: Path | None


def _claim(export_id: str, me: str) -> Work | None:
    def run(session) -> tuple[JobExport, Job] | None:
        export = service.claim(session, export_id, me)
        return None if export is None else (export, session.get(Job, export.job_id))
    claimed = with_db(run)
    if claimed is None:
        return None
    export, job = claimed
    artifact_dir = job_artifact_dir(job)
    base_id = read_manifest(artifact_dir)["base_model"]["id"]  # the artifact's own base (adaptive: its encoder)
    base = with_db(lambda session: session.get(BaseModel, base_id))
    return Work(export.id, export.attempt, artifact_dir, base_id, local_model_dir(base) if base else None)


def _merge_and_publish(work: Work, me: str, staging: Path) -> bool:
    """Write merged/ into `staging`, rename it into place, record its files; False if the lease was lost."""
    from app.training.export import export_merged

    if work.base_dir is None:
        raise TrainingError(f"Base model {work.base_id!r} is no longer registered, so the artifact has nothing to "
                            "merge into; register it again (tuneforge models) and ask again.", code="model_not_found")
    export_merged(work.artifact_dir, work.base_dir, staging)
    fsync_tree(staging)
    final = work.artifact_dir / MERGED
    replace_dir(staging, final)
    records = file_records(final)
    rows = [(f"{MERGED}/{name}", size, digest) for name, size, digest in records]
    try:
        upload_tree(final, records)  # a remote store: the merged files before their rows
        return with_db(lambda session: service.complete(session, work.export_id, me, rows))
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)  # nothing listed: nothing may stay on disk either
        raise


def execute_export(export_id: str) -> str:
    """Run one export to a final state; returns it ("skipped" for a duplicate or stale message)."""
    me = worker_id()
    try:
        work = _claim(export_id, me)
    except (OSError, ValueError, KeyError) as exc:  # the job's manifest went missing or bad after the request
        with_db(lambda session: service.fail(session, export_id, me, "artifact_missing",
                                             f"The job's artifact is unreadable: {exc}"))
        return "failed"
    if work is None:
        log.info("export %s is not queued (duplicate or stale message); skipping", export_id)
        return "skipped"
    staging = get_settings().artifacts_dir / ".staging" / f"{export_id}-{work.attempt}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with Heartbeat(export_id, me, get_settings().heartbeat_interval, table=JobExport):
            published = _merge_and_publish(work, me, staging)
        return "succeeded" if published else "lease_lost"
    except TrainingError as exc:
        with_db(lambda session: service.fail(session, export_id, me, exc.code, exc.message))
        return "failed"
    except Exception as exc:  # noqa: BLE001 - the worker must survive any one export's failure
        log.exception("export %s crashed", export_id)
        code, message = ("disk_full", "The worker ran out of disk space writing the merged files; nothing partial "
                         "was published. Free space and ask again.") if out_of_space(exc) else (
                         "internal_error", f"Export crashed: {type(exc).__name__}: {exc}"[:2000])
        with_db(lambda session: service.fail(session, export_id, me, code, message))
        return "failed"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@shared_task(name=EXPORT_TASK, ignore_result=True, acks_late=True)
def export_job(export_id: str) -> str:
    with models_held():  # the base model merged into stays out of the cache's eviction until done
        return execute_export(export_id)
