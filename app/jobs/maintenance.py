"""Reaper and reconciler of jobs and exports: the database is the truth, the broker is only a delivery
mechanism (app/leases.py finds what a dead worker or a lost message left behind).

One pass runs under a PostgreSQL advisory lock, so any number of api/worker processes can run the
loop and only one acts at a time.
"""
from __future__ import annotations

import logging
import threading

from sqlalchemy import text

from app import leases
from app.core.config import get_settings
from app.core.queue import JOB_ID
from app.core.retry import with_db
from app.corpora import recovery as corpora
from app.exports import recovery as exports
from app.files.sweeper import sweep_orphan_files
from app.jobs import state
from app.jobs.checkpoint_sweep import sweep_stored_checkpoints
from app.jobs.dispatch import admit
from app.jobs.events import record_event
from app.models import Job
from app.models.job import JobStatus
from app.webhooks import recovery as webhooks

log = logging.getLogger(__name__)
LOCK_KEY = 0x7475_6E65  # "tune"


def reap_stale(session) -> list[str]:
    """Running jobs whose worker stopped beating go back to the queue, or fail after max attempts."""
    stale = leases.stale(session, Job, state.HELD_BY_WORKER)
    for job in stale:
        state.reap(session, job, leases.silence(job), get_settings().max_attempts)
    return [job.id for job in stale]


def lost_messages(session) -> list[str]:
    """Queued jobs whose message the broker lost: marked unsent, so this pass sends them again."""
    lost = leases.lost(session, Job, JobStatus.queued, JOB_ID)
    for job in lost:
        record_event(session, job.id, "The broker lost this job's message; sending it again", level="warn")
    return [job.id for job in lost]


NOTHING = {"reaped": [], "lost": [], "swept": [], "checkpoints_swept": [], "exports_reaped": [], "exports_lost": [],
           "webhooks_reaped": [], "webhooks_lost": [], "corpora_reaped": [], "corpora_lost": []}


def run_once() -> dict[str, list[str]]:
    """One pass; returns what it did (for tests and logs). Exports recover like jobs, and are sent
    after the jobs' fair share (they skip the dispatcher: one is sent as soon as it is queued);
    webhook deliveries recover the same way, and those due are sent (app/webhooks/recovery.py)."""
    def locked_pass(session) -> dict[str, list[str]] | None:
        if not session.scalar(text("select pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}):
            return None
        return {"reaped": reap_stale(session), "lost": lost_messages(session), "swept": sweep_orphan_files(session),
                "checkpoints_swept": sweep_stored_checkpoints(session),
                "exports_reaped": exports.reap_stale(session), "exports_lost": exports.lost_messages(session),
                "webhooks_reaped": webhooks.reap_stale(session), "webhooks_lost": webhooks.lost_messages(session),
                "corpora_reaped": corpora.reap_stale(session), "corpora_lost": corpora.lost_messages(session)}
    done = with_db(locked_pass) or NOTHING
    return {**done, "sent": admit(), "exports_sent": exports.send_unsent(), "webhooks_sent": webhooks.send_due(),
            "corpora_sent": corpora.send_unsent()}


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
