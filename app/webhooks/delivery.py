"""One delivery attempt, in three steps so no database session is held while the receiver answers:
`claim` (pending → sending, short transaction), `post` (the signed HTTP request), `record` (the
attempt's row and what follows: delivered, retried after backoff, or failed)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.ids import new_id
from app.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.webhooks.rotation import signing_secrets
from app.webhooks.signing import headers
from app.webhooks.urls import url_problem


@dataclass(frozen=True)
class Claimed:
    """What one attempt needs, read while claiming."""

    id: str
    attempt: int
    url: str
    secrets: tuple[str, ...]  # the current signing secret, then a rotated-out one still in its window
    body: str


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the receiver's HTTP status; None when none came back
    error: str | None   # why the attempt failed; None when it succeeded
    duration_ms: int


def endpoint_enabled():
    """The delivery's endpoint is not disabled (a disabled endpoint's pending deliveries wait for it)."""
    return exists().where(WebhookEndpoint.id == WebhookDelivery.endpoint_id, WebhookEndpoint.disabled.is_(False))


def claim(session: Session, delivery_id: str, worker: str) -> Claimed | None:
    """pending (and due) → sending for `worker`, as attempt n+1; None for a duplicate or early message,
    or while the endpoint is disabled."""
    now = utcnow()
    delivery = session.scalar(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == DeliveryStatus.pending,
               WebhookDelivery.next_attempt_at <= now, endpoint_enabled())
        .values(status=DeliveryStatus.sending, worker_id=worker, heartbeat_at=now, started_at=now,
                attempt=WebhookDelivery.attempt + 1)
        .returning(WebhookDelivery))
    if delivery is None:
        return None
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    return Claimed(delivery.id, delivery.attempt, endpoint.url, signing_secrets(endpoint, now), delivery.body)


def post(claimed: Claimed) -> Outcome:
    """POST the signed body; any 2xx is success. Redirects are not followed and the answer's body is
    not read. The URL is checked again first: its host may resolve elsewhere than at registration."""
    started = time.perf_counter()

    def took() -> int:
        return int((time.perf_counter() - started) * 1000)
    if (problem := url_problem(claimed.url, resolve=True)) is not None:
        return Outcome(None, f"not sent: {problem}", took())
    signed = headers(claimed.secrets, claimed.id, int(time.time()), claimed.body)
    try:
        with httpx.Client(timeout=get_settings().webhook_timeout, follow_redirects=False) as client:
            with client.stream("POST", claimed.url, content=claimed.body.encode(), headers=signed) as response:
                status = response.status_code
    except httpx.HTTPError as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:1000], took())
    error = None if 200 <= status < 300 else f"the receiver answered HTTP {status}; any 2xx acknowledges"
    return Outcome(status, error, took())


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (1, 2, …): base · 2^(attempt-1), capped."""
    settings = get_settings()
    return min(settings.webhook_retry_base * 2 ** (attempt - 1), settings.webhook_retry_max)


def settle(delivery: WebhookDelivery, status: int | None, error: str | None) -> None:
    """What follows an attempt: delivered, pending again after its backoff, or failed when used up."""
    now = utcnow()
    delivery.response_status, delivery.last_error = status, error
    delivery.worker_id, delivery.enqueued_at = None, None
    if error is None:
        delivery.status, delivery.finished_at = DeliveryStatus.delivered, now
    elif delivery.attempt >= get_settings().webhook_max_attempts:
        delivery.status, delivery.finished_at = DeliveryStatus.failed, now
    else:
        delivery.status = DeliveryStatus.pending
        delivery.next_attempt_at = now + timedelta(seconds=backoff(delivery.attempt))


def record(session: Session, claimed: Claimed, outcome: Outcome, worker: str) -> str:
    """Store the attempt and settle the delivery; "lease_lost" if the maintenance pass took it back
    meanwhile (the attempt is still recorded: it happened)."""
    delivery = session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == claimed.id).with_for_update())
    if delivery is None:  # its endpoint was deleted meanwhile
        return "deleted"
    session.add(WebhookAttempt(id=new_id("whatt_"), delivery_id=claimed.id, attempt=claimed.attempt, worker_id=worker,
                               response_status=outcome.status, error=outcome.error, duration_ms=outcome.duration_ms))
    if delivery.status != DeliveryStatus.sending or delivery.worker_id != worker:
        return "lease_lost"
    settle(delivery, outcome.status, outcome.error)
    return delivery.status
