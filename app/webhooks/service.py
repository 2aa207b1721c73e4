"""Webhook endpoint rules: who may register, change, rotate and test what, and the lookups the endpoints
need. Never commits."""
from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, NotFound, StateConflict, shown
from app.core.ids import new_id
from app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.tenants.limits import QuotaExceeded
from app.models.base import utcnow
from app.webhooks import outbox, rotation
from app.webhooks.schemas import CreateWebhookRequest, PingWebhookRequest, RotateSecretRequest, UpdateWebhookRequest
from app.webhooks.signing import new_secret
from app.webhooks.urls import url_problem

MAX_ENDPOINTS_PER_TENANT = 20


def create_endpoint(session: Session, tenant_id: str, body: CreateWebhookRequest) -> WebhookEndpoint:
    """Register `body.url` for the tenant after checking where it points; the secret is new."""
    check_url(body.url)
    count = session.scalar(select(func.count()).select_from(WebhookEndpoint)
                           .where(WebhookEndpoint.tenant_id == tenant_id))
    if count >= MAX_ENDPOINTS_PER_TENANT:
        raise QuotaExceeded(f"A tenant may register at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete "
                            "one (DELETE /v1/webhook_endpoints/{id}) first.", code="webhook_endpoint_limit")
    endpoint = WebhookEndpoint(id=new_id("whep_"), tenant_id=tenant_id, url=body.url, secret=new_secret(),
                               name=body.name or urlsplit(body.url).hostname or body.url,
                               event_types=list(dict.fromkeys(body.event_types)))
    session.add(endpoint)
    session.flush()
    session.refresh(endpoint)
    return endpoint


def check_url(url: str) -> None:
    """A URL may receive webhooks (app/webhooks/urls.py), or a 400 naming `url` says why not."""
    problem = url_problem(url, resolve=False)
    if problem is not None:
        raise BadRequest(problem, param="url", code="invalid_webhook_url")


def update_endpoint(session: Session, tenant_id: str, endpoint_id: str, body: UpdateWebhookRequest) -> WebhookEndpoint:
    """Change what `body` names. A new url or event set applies from the next attempt or event; enabling
    a disabled endpoint sends what waited. `updated_at` moves only when something changed."""
    endpoint = get_endpoint(session, tenant_id, endpoint_id)
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        check_url(changes["url"])
    if "event_types" in changes:
        changes["event_types"] = list(dict.fromkeys(changes["event_types"]))
    changed = {field: value for field, value in changes.items() if getattr(endpoint, field) != value}
    if not changed:
        return endpoint
    enabled_again = endpoint.disabled and changed.get("disabled") is False
    for field, value in changed.items():
        setattr(endpoint, field, value)
    endpoint.updated_at = utcnow()
    if enabled_again:
        outbox.resume(session, endpoint)
    session.flush()
    return endpoint


def rotate_secret(session: Session, tenant_id: str, endpoint_id: str, body: RotateSecretRequest) -> WebhookEndpoint:
    """A new signing secret; the replaced one keeps signing beside it for the overlap `body` asks for."""
    endpoint = get_endpoint(session, tenant_id, endpoint_id)
    rotation.rotate(endpoint, rotation.overlap_seconds(body.expire_previous_in,
                                                       body.keep_old_secret_active_for_24_hours))
    session.flush()
    return endpoint


def ping(session: Session, tenant_id: str, endpoint_id: str, body: PingWebhookRequest) -> WebhookDelivery:
    """Queue a sample event for the endpoint through the outbox; a disabled endpoint sends nothing, so 409."""
    endpoint = get_endpoint(session, tenant_id, endpoint_id)
    if endpoint.disabled:
        raise StateConflict(f"Webhook endpoint {endpoint.id} is disabled and sends nothing; enable it first "
                            '(POST /v1/webhook_endpoints/{id} with {"disabled": false}).',
                            param="webhook_endpoint_id", code="webhook_endpoint_disabled")
    return outbox.ping(session, endpoint, body.event_type)


def get_endpoint(session: Session, tenant_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id,
                                                            WebhookEndpoint.tenant_id == tenant_id))
    if endpoint is None:
        raise NotFound(f"No such webhook endpoint: {shown(endpoint_id)}.", param="webhook_endpoint_id")
    return endpoint


def list_endpoints(tenant_id: str):
    return select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)


def delete_endpoint(session: Session, tenant_id: str, endpoint_id: str) -> None:
    """Remove the endpoint with its deliveries (pending ones are not sent any more)."""
    session.delete(get_endpoint(session, tenant_id, endpoint_id))
    session.flush()


def deliveries_query(endpoint: WebhookEndpoint):
    return select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)


def get_delivery(session: Session, endpoint: WebhookEndpoint, delivery_id: str) -> WebhookDelivery:
    delivery = session.scalar(deliveries_query(endpoint).where(WebhookDelivery.id == delivery_id))
    if delivery is None:
        raise NotFound(f"No such delivery of webhook endpoint {endpoint.id}: {shown(delivery_id)}.",
                       param="delivery_id")
    return delivery


def attempts_of(session: Session, deliveries: list[WebhookDelivery]) -> dict[str, list[WebhookAttempt]]:
    """Each delivery's attempts, oldest first, in one query."""
    found: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if found:
        for attempt in session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(found))
                                       .order_by(WebhookAttempt.seq)):
            found[attempt.delivery_id].append(attempt)
    return found
