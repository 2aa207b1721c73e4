"""Reaper and reconciler: the database is the truth, the broker is only a delivery mechanism.

One pass runs under a PostgreSQL advisory lock, so any number of api/worker processes can run the
loop and only one acts at a time.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import select, text

from app.core.config import get_settings
from app.core.queue import job_ids_held_by_broker
from app.core.retry import with_db
from app.files.sweeper import sweep_orphan_files
from app.jobs import state
from app.jobs.dispatch import admit
from app.jobs.events import record_event
from app.models import Job
from app.models.base import utcnow
from app.models.job import JobStatus

log = logging.getLogger(__name__)
LOCK_KEY = 0x7475_6E65  # "tune"


def reap_stale(session) -> list[str]:
    """Running jobs whose worker stopped beating go back to the queue, or fail after max attempts."""
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.heartbeat_timeout)
    stale = list(session.scalars(select(Job).where(Job.status.in_(state.HELD_BY_WORKER),
                                                   Job.heartbeat_at < cutoff).with_for_update(skip_locked=True)))
    for job in stale:
        state.reap(session, job, int((utcnow() - job.heartbeat_at).total_seconds()), settings.max_attempts)
    return [job.id for job in stale]


def lost_messages(session) -> list[str]:
    """Queued jobs sent a while ago whose message the broker no longer holds (Redis flushed or
    restarted without persistence): marked unsent so this pass sends them again."""
    cutoff = utcnow() - timedelta(seconds=get_settings().resend_after)
    candidates = list(session.scalars(select(Job).where(Job.status == JobStatus.queued, Job.enqueued_at < cutoff)))
    if not candidates:
        return []
    held = job_ids_held_by_broker()
    lost = [job for job in candidates if job.id not in held]
    for job in lost:
        job.enqueued_at = None
        record_event(session, job.id, "The broker lost this job's message; sending it again", level="warning")
    return [job.id for job in lost]


def run_once() -> dict[str, list[str]]:
    """One pass; returns what it did (for tests and logs)."""
    def locked_pass(session) -> dict[str, list[str]] | None:
        if not session.scalar(text("select pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}):
            return None
        return {"reaped": reap_stale(session), "lost": lost_messages(session), "swept": sweep_orphan_files(session)}
    done = with_db(locked_pass) or {"reaped": [], "lost": [], "swept": []}
    return {**done, "sent": admit()}


class MaintenanceLoop:
    """Runs `run_once` every `dispatcher_interval` seconds in a daemon thread."""

    def __init__(self, interval: float | None = None):
        self.interval = interval or get_settings().dispatcher_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tuneforge-maintenance", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                run_once()
            except Exception:
                log.exception("maintenance pass failed; retrying next interval")

    def start(self) -> MaintenanceLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
