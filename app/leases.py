"""Work a worker claims and holds (WorkerLeaseMixin: jobs, exports, corpora), as the maintenance pass sees it.

The database says what is queued or held; the broker only delivers. A row held by a worker whose
heartbeat went stale, and a queued row whose message the broker no longer holds, are found the same
way for every such table. What then happens to the row (re-queued, failed, an event) stays with its
table's owner: app/jobs/state.py for jobs; exports and corpora share `requeue_or_fail` and `send_unsent`
(app/exports/recovery.py, app/corpora/recovery.py).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.queue import held_by_broker
from app.models.base import WorkerLeaseMixin, utcnow

log = logging.getLogger(__name__)

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


def requeue_or_fail(session: Session, model: type[L], running: str, queued: str, failed: str, what: str) -> list[str]:
    """Rows `running` whose worker stopped beating: `queued` again (to be sent), or `failed` as worker_lost
    after `max_attempts`. For tables whose rows carry an `error` column (exports, corpora); jobs keep
    their own rules (app/jobs/state.py). Returns their ids."""
    max_attempts = get_settings().max_attempts
    rows: list[Any] = stale(session, model, (running,))
    for row in rows:  # locked FOR UPDATE: the old worker's compare-and-set writes wait, then miss
        silent, worker = silence(row), row.worker_id
        if row.attempt >= max_attempts:
            row.status, row.finished_at = failed, utcnow()
            row.error = worker_lost_error(what, row.attempt, silent, max_attempts)
        else:
            row.status, row.worker_id, row.enqueued_at = queued, None, None
        log.warning("%s %s: worker %s lost (no heartbeat for %ds); %s", what, row.id, worker, silent, row.status)
    return [row.id for row in rows]


def send_unsent(model: Any, queued: str, send: Callable[[str], None], what: str) -> list[str]:
    """Send every `queued` row of `model` not sent yet (re-queued, lost, or refused by a down broker);
    returns their ids. Never raises for a down broker or database: the rows stay unsent and the next
    pass tries again."""
    sent: list[str] = []
    try:
        with session_scope() as session:
            unsent = session.scalars(select(model).where(model.status == queued, model.enqueued_at.is_(None))
                                     .order_by(model.created_at).with_for_update(skip_locked=True))
            for row in unsent:
                send(row.id)
                row.enqueued_at = utcnow()
                sent.append(row.id)
    except Exception as exc:  # noqa: BLE001 - nothing is lost, the rows stay unsent
        log.warning("%s pass failed after sending %d: %s", what, len(sent), exc)
    return sent
