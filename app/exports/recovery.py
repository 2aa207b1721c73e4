"""Exports recover without a request, as jobs do: the maintenance pass (app/jobs/maintenance.py) re-queues
an export whose worker stopped beating (failing it after `max_attempts`), marks unsent one whose message
the broker lost, and sends every queued export not sent yet. The queries are app/leases.py's, shared
with the jobs' reaper; a worker still holding a re-queued export loses it (its writes name its worker_id).
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import leases
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.queue import EXPORT_ID, enqueue_export
from app.models import ExportStatus, JobExport
from app.models.base import utcnow

log = logging.getLogger(__name__)


def reap_stale(session: Session) -> list[str]:
    """Running exports whose worker stopped beating: queued again, or failed after `max_attempts`."""
    max_attempts = get_settings().max_attempts
    stale = leases.stale(session, JobExport, (ExportStatus.running,))
    for export in stale:  # locked FOR UPDATE: the old worker's compare-and-set writes wait, then miss
        silent, worker = leases.silence(export), export.worker_id
        if export.attempt >= max_attempts:
            export.status, export.finished_at = ExportStatus.failed, utcnow()
            export.error = leases.worker_lost_error("export", export.attempt, silent, max_attempts)
        else:
            export.status, export.worker_id, export.enqueued_at = ExportStatus.queued, None, None
        log.warning("export %s: worker %s lost (no heartbeat for %ds); %s", export.id, worker, silent,
                    export.status)
    return [export.id for export in stale]


def lost_messages(session: Session) -> list[str]:
    """Queued exports whose message the broker lost: marked unsent, so `send_unsent` sends them again."""
    lost = leases.lost(session, JobExport, ExportStatus.queued, EXPORT_ID)
    for export in lost:
        log.warning("export %s: the broker lost its message; sending it again", export.id)
    return [export.id for export in lost]


def send_unsent() -> list[str]:
    """Send every queued export not sent yet (re-queued, lost, or refused by a down broker); returns
    their ids. Never raises for a down broker: the next pass tries again."""
    sent: list[str] = []
    try:
        with session_scope() as session:
            unsent = session.scalars(select(JobExport).where(JobExport.status == ExportStatus.queued,
                                                             JobExport.enqueued_at.is_(None))
                                     .order_by(JobExport.created_at).with_for_update(skip_locked=True))
            for export in unsent:
                enqueue_export(export.id)
                export.enqueued_at = utcnow()
                sent.append(export.id)
    except Exception as exc:  # broker or database down: nothing is lost, the rows stay unsent
        log.warning("export pass failed after sending %d export(s): %s", len(sent), exc)
    return sent
