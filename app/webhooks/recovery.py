"""Webhook deliveries recover like jobs and exports (app/leases.py): the maintenance pass puts back a
delivery whose worker died mid-attempt, marks unsent one whose message the broker lost, and sends
every pending delivery that is due (new ones, retries whose backoff has passed, and the two above)."""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import leases
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.ids import new_id
from app.core.queue import WEBHOOK_ID, enqueue_webhook
from app.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from app.models.base import utcnow
from app.webhooks.delivery import endpoint_enabled, settle

log = logging.getLogger(__name__)
BATCH = 200  # most deliveries sent by one pass


def reap_stale(session: Session) -> list[str]:
    """Deliveries whose worker stopped beating mid-attempt: the attempt is recorded as lost, and the
    delivery retried after its backoff (or failed once its attempts are used up)."""
    stale = leases.stale(session, WebhookDelivery, (DeliveryStatus.sending,))
    for delivery in stale:
        error = f"worker {delivery.worker_id} stopped responding during this attempt (no heartbeat for " \
                f"{leases.silence(delivery)}s)"
        session.add(WebhookAttempt(id=new_id("whatt_"), delivery_id=delivery.id,
                                   attempt=delivery.attempt, worker_id=delivery.worker_id, error=error,
                                   duration_ms=0))
        settle(delivery, None, error)
        log.warning("webhook delivery %s: %s; now %s", delivery.id, error, delivery.status)
    return [delivery.id for delivery in stale]


def lost_messages(session: Session) -> list[str]:
    """Pending deliveries whose message the broker lost: marked unsent, so `send_due` sends them again."""
    lost = leases.lost(session, WebhookDelivery, DeliveryStatus.pending, WEBHOOK_ID, get_settings().webhook_queue)
    for delivery in lost:
        log.warning("webhook delivery %s: the broker lost its message; sending it again", delivery.id)
    return [delivery.id for delivery in lost]


def send_due(ids: list[str] | None = None) -> list[str]:
    """Send pending deliveries that are due and unsent (only `ids`, when given) and whose endpoint is
    not disabled; returns their ids.
    Never raises for a down broker or database: the rows stay unsent and the next pass tries again."""
    sent: list[str] = []
    try:
        with session_scope() as session:
            query = select(WebhookDelivery).where(WebhookDelivery.status == DeliveryStatus.pending,
                                                  WebhookDelivery.next_attempt_at <= utcnow(),
                                                  WebhookDelivery.enqueued_at.is_(None), endpoint_enabled())
            if ids is not None:
                query = query.where(WebhookDelivery.id.in_(ids))
            for delivery in session.scalars(query.order_by(WebhookDelivery.seq).limit(BATCH)
                                            .with_for_update(skip_locked=True)):
                enqueue_webhook(delivery.id)
                delivery.enqueued_at = utcnow()
                sent.append(delivery.id)
    except Exception as exc:
        log.warning("webhook pass failed after sending %d delivery(ies): %s", len(sent), exc)
    return sent
