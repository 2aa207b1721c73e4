"""What the webhook tests share: register an endpoint over the API, end a job, read the outbox."""
from __future__ import annotations

from sqlalchemy import select

from app.core.db import session_scope
from app.jobs import state
from app.models import Job, WebhookAttempt, WebhookDelivery
from tests.api.helpers import auth

BASE = "/v1/webhook_endpoints"


def register(client, key: str, url: str, **body) -> dict:
    response = client.post(BASE, headers=auth(key), json={"url": url, **body})
    assert response.status_code == 200, response.text
    return response.json()


def cancel(job_id: str) -> None:
    with session_scope() as db:
        state.cancel(db, db.get(Job, job_id))


def deliveries(job_id: str) -> list[WebhookDelivery]:
    with session_scope() as db:
        return list(db.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                               .order_by(WebhookDelivery.seq)))


def delivery(delivery_id: str) -> WebhookDelivery:
    with session_scope() as db:
        return db.get(WebhookDelivery, delivery_id)


def attempts(delivery_id: str) -> list[WebhookAttempt]:
    with session_scope() as db:
        return list(db.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                               .order_by(WebhookAttempt.seq)))
