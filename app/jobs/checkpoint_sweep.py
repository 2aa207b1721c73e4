"""Checkpoint snapshots in the object store that nothing will resume from (app.jobs.checkpoint_store).

The worker deletes a job's stored snapshots when it succeeds or is cancelled while running, but some are left:
a job that failed (its worker's error path keeps them, and a reaped job's worker is gone), one cancelled while
paused or queued after an earlier attempt (no worker holds it), one whose worker died between publishing and
deleting, or a delete the store refused. The maintenance pass (app.jobs.maintenance) removes them: a succeeded
job's at once (its artifact is published in the same transaction that marks it succeeded), a failed or
cancelled job's `checkpoint_grace` seconds after it ended (time for an operator to look, and for a stopping
worker's last upload to land), and those of a job no row names once their newest object is that old. Paused,
queued and running jobs keep theirs.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import select

from app.core.config import get_settings
from app.core.object_store import ObjectStore, StoreError, get_store
from app.jobs import checkpoint_store
from app.models import Job
from app.models.base import utcnow
from app.models.job import JobStatus

log = logging.getLogger(__name__)


def sweep_stored_checkpoints(session, store: ObjectStore | None = None) -> list[str]:
    """Delete the stored snapshots of jobs that will not resume; returns those jobs' ids. Nothing to do without
    a remote store (local checkpoints are the worker's to delete). A store that fails is retried next pass: the
    reaper sharing this pass goes on."""
    store = store or get_store()
    if not store.remote:
        return []
    try:
        return _sweep(session, store)
    except StoreError as exc:
        log.warning("checkpoint sweep skipped this pass: %s", exc)
        return []


def _sweep(session, store: ObjectStore) -> list[str]:
    stored = store.children(checkpoint_store.PREFIX)
    if not stored:
        return []
    grace = get_settings().checkpoint_grace
    ended_before = utcnow() - timedelta(seconds=grace)
    rows = {job_id: (status, finished) for job_id, status, finished in session.execute(
        select(Job.id, Job.status, Job.finished_at).where(Job.id.in_(stored)))}
    swept = []
    for job_id in stored:
        if job_id not in rows:
            objects = store.list(checkpoint_store.job_prefix(job_id))
            due = all(o.mtime < time.time() - grace for o in objects)
        else:
            status, finished = rows[job_id]
            due = status == JobStatus.succeeded or (
                status in (JobStatus.failed, JobStatus.cancelled) and (finished is None or finished < ended_before))
        if due:
            checkpoint_store.delete(store, job_id)
            swept.append(job_id)
    return swept
