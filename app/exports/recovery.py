"""Exports recover without a request, as jobs do: the maintenance pass (app/jobs/maintenance.py) re-queues
an export whose worker stopped beating (failing it after `max_attempts`), marks unsent one whose message
the broker lost, and sends every queued export not sent yet. The queries are app/leases.py's, shared
with the jobs' reaper; a worker still holding a re-queued export loses it (its writes name its worker_id).
"""
from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from app import leases
from app.core.queue import EXPORT_ID, enqueue_export
from app.models import ExportStatus, JobExport

log = logging.getLogger(__name__)


def reap_stale(session: Session) -> list[str]:
    """Running exports whose worker stopped beating: queued again, or failed after `max_attempts`."""
    return leases.requeue_or_fail(session, JobExport, ExportStatus.running, ExportStatus.queued, ExportStatus.failed,
                                  "export")


def lost_messages(session: Session) -> list[str]:
    """Queued exports whose message the broker lost: marked unsent, so `send_unsent` sends them again."""
    lost = leases.lost(session, JobExport, ExportStatus.queued, EXPORT_ID)
    for export in lost:
        log.warning("export %s: the broker lost its message; sending it again", export.id)
    return [export.id for export in lost]


def send_unsent() -> list[str]:
    """Send every queued export not sent yet (re-queued, lost, or refused by a down broker)."""
    return leases.send_unsent(JobExport, ExportStatus.queued, enqueue_export, "export")
