"""Corpora recover without a request, as exports do (app/exports/recovery.py): the maintenance pass
(app/jobs/maintenance.py) re-queues a corpus whose indexing worker stopped beating (failing it after
`max_attempts`), marks unsent one whose message a flushed Redis lost, and sends every unsent queued one.
The queries are app/leases.py's; a worker still holding a re-queued corpus loses it (its writes name
its worker_id)."""
from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from app import leases
from app.core.queue import CORPUS_ID, enqueue_corpus
from app.models import Corpus, CorpusStatus

log = logging.getLogger(__name__)


def reap_stale(session: Session) -> list[str]:
    """Running corpora whose worker stopped beating: queued again, or failed after `max_attempts`."""
    return leases.requeue_or_fail(session, Corpus, CorpusStatus.running, CorpusStatus.queued, CorpusStatus.failed,
                                  "indexing")


def lost_messages(session: Session) -> list[str]:
    """Queued corpora whose message the broker lost: marked unsent, so `send_unsent` sends them again."""
    lost = leases.lost(session, Corpus, CorpusStatus.queued, CORPUS_ID)
    for corpus in lost:
        log.warning("corpus %s: the broker lost its message; sending it again", corpus.id)
    return [corpus.id for corpus in lost]


def send_unsent() -> list[str]:
    """Send every queued corpus not sent yet; never raises for a down broker (the next pass tries again)."""
    return leases.send_unsent(Corpus, CorpusStatus.queued, enqueue_corpus, "corpus")
