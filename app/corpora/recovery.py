"""Corpora recover without a request, as exports do (app/exports/recovery.py): the maintenance pass
(app/jobs/maintenance.py) re-queues a corpus whose indexing worker stopped beating (failing it after
`max_attempts`), marks unsent one whose message a flushed Redis lost, and sends every unsent queued one.
The queries are app/leases.py's; a worker still holding a re-queued corpus loses it (its writes name
its worker_id)."""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import leases
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.queue import CORPUS_ID, enqueue_corpus
from app.models import Corpus, CorpusStatus
from app.models.base import utcnow

log = logging.getLogger(__name__)


def reap_stale(session: Session) -> list[str]:
    """Running corpora whose worker stopped beating: queued again, or failed after `max_attempts`."""
    max_attempts = get_settings().max_attempts
    stale = leases.stale(session, Corpus, (CorpusStatus.running,))
    for corpus in stale:
        silent, worker = leases.silence(corpus), corpus.worker_id
        if corpus.attempt >= max_attempts:
            corpus.status, corpus.finished_at = CorpusStatus.failed, utcnow()
            corpus.error = leases.worker_lost_error("indexing", corpus.attempt, silent, max_attempts)
        else:
            corpus.status, corpus.worker_id, corpus.enqueued_at = CorpusStatus.queued, None, None
        log.warning("corpus %s: worker %s lost (no heartbeat for %ds); %s", corpus.id, worker, silent, corpus.status)
    return [corpus.id for corpus in stale]


def lost_messages(session: Session) -> list[str]:
    """Queued corpora whose message the broker lost: marked unsent, so `send_unsent` sends them again."""
    lost = leases.lost(session, Corpus, CorpusStatus.queued, CORPUS_ID)
    for corpus in lost:
        log.warning("corpus %s: the broker lost its message; sending it again", corpus.id)
    return [corpus.id for corpus in lost]


def send_unsent() -> list[str]:
    """Send every queued corpus not sent yet; never raises for a down broker (the next pass tries again)."""
    sent: list[str] = []
    try:
        with session_scope() as session:
            unsent = session.scalars(select(Corpus).where(Corpus.status == CorpusStatus.queued,
                                                          Corpus.enqueued_at.is_(None))
                                     .order_by(Corpus.created_at).with_for_update(skip_locked=True))
            for corpus in unsent:
                enqueue_corpus(corpus.id)
                corpus.enqueued_at = utcnow()
                sent.append(corpus.id)
    except Exception as exc:  # broker or database down: nothing is lost, the rows stay unsent
        log.warning("corpus pass failed after sending %d corpus message(s): %s", len(sent), exc)
    return sent
