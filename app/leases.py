"""Work a worker claims and holds (WorkerLeaseMixin: jobs and exports), as the maintenance pass sees it.

The database says what is queued or held; the broker only delivers. A row held by a worker whose
heartbeat went stale, and a queued row whose message the broker no longer holds, are found the same
way for every such table. What then happens to the row (re-queued, failed, an event) stays with its
table's owner: app/jobs/state.py for jobs, app/exports/recovery.py for exports.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.queue import held_by_broker
from app.models.base import WorkerLeaseMixin, utcnow

L = TypeVar("L", bound=WorkerLeaseMixin)  # a mapped class with `id` and `status` columns too


def heartbeat_cutoff() -> datetime:
    """A held row whose heartbeat is older than this has lost its worker."""
    return utcnow() - timedelta(seconds=get_settings().heartbeat_timeout)


def resend_cutoff() -> datetime:
    """A queued row sent before this and not held by the broker has lost its message."""
    return utcnow() - timedelta(seconds=get_settings().resend_after)


def beat_is_stale(row: WorkerLeaseMixin) -> bool:
    """Whether the worker holding `row` stopped beating (or never beat)."""
    beat = row.heartbeat_at or row.started_at
    return beat is None or beat < heartbeat_cutoff()


def silence(row: WorkerLeaseMixin) -> int:
    """Seconds since the row's last heartbeat."""
    return int((utcnow() - (row.heartbeat_at or row.started_at or utcnow())).total_seconds())


def stale(session: Session, model: type[L], held: Iterable[str]) -> list[L]:
    """Rows in a `held` status whose worker stopped beating, locked FOR UPDATE (SKIP LOCKED: a row
    another writer holds is looked at on the next pass)."""
    return list(session.scalars(select(model).where(model.status.in_(tuple(held)),  # type: ignore[attr-defined]
                                                    model.heartbeat_at < heartbeat_cutoff())
                                .with_for_update(skip_locked=True)))


def lost(session: Session, model: type[L], queued: str, ids: re.Pattern[bytes], queue: str | None = None) -> list[L]:
    """Queued rows sent over `resend_after` seconds ago whose message (matched by `ids`) the broker no
    longer holds in `queue` (default: the training queue), e.g. Redis flushed or restarted without
    persistence: marked unsent, to be sent again."""
    candidates = list(session.scalars(select(model).where(model.status == queued,  # type: ignore[attr-defined]
                                                          model.enqueued_at < resend_cutoff())))
    if not candidates:
        return []
    held = held_by_broker(ids, queue)
    missing = [row for row in candidates if row.id not in held]  # type: ignore[attr-defined]
    for row in missing:
        row.enqueued_at = None
    return missing


def worker_lost_error(what: str, attempts: int, silent: int, max_attempts: int) -> dict[str, str | None]:
    """The error of a `what` ("job", "export") given up on after its worker died `attempts` times."""
    message = (f"The worker running this {what} stopped responding {attempts} times (no heartbeat for {silent}s); "
               f"giving up after {max_attempts} attempts.")
    return {"code": "worker_lost", "message": message, "param": None}
