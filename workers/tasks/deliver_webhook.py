"""The webhook task: claim a due delivery, POST it (heartbeat beating, no database session held), record it."""
from __future__ import annotations

import logging

from celery import shared_task

from app.core.config import get_settings
from app.core.queue import WEBHOOK_TASK
from app.core.retry import with_db
from app.models import WebhookDelivery
from app.webhooks.delivery import claim, post, record
from workers.progress import Heartbeat
from workers.tasks.run_job import worker_id

log = logging.getLogger(__name__)


def execute_delivery(delivery_id: str) -> str:
    """One attempt of one delivery; returns what became of it ("skipped" for a duplicate or early message)."""
    me = worker_id()
    claimed = with_db(lambda session: claim(session, delivery_id, me))
    if claimed is None:
        return "skipped"
    with Heartbeat(claimed.id, me, get_settings().heartbeat_interval, table=WebhookDelivery):
        outcome = post(claimed)
    result = with_db(lambda session: record(session, claimed, outcome, me))
    log.info("webhook delivery %s attempt %d: %s (%s)", claimed.id, claimed.attempt, result,
             outcome.error or f"HTTP {outcome.status}")
    return result


@shared_task(name=WEBHOOK_TASK, ignore_result=True, acks_late=True)
def deliver_webhook(delivery_id: str) -> str:
    return execute_delivery(delivery_id)
