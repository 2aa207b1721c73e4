"""Webhook endpoint rules: who may register what, and the lookups the endpoints need. Never commits."""
from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, NotFound, shown
from app.core.ids import new_id
from app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.tenants.limits import QuotaExceeded
from app.webhooks.schemas import CreateWebhookRequest
from app.webhooks.signing import new_secret
from app.webhooks.urls import url_problem

MAX_ENDPOINTS_PER_TENANT = 20


def create_endpoint(session: Session, tenant_id: str, body: CreateWebhookRequest) -> WebhookEndpoint:
    """Register `body.url` for the tenant after checking where it points; the secret is new."""
    problem = url_problem(body.url, resolve=False)
    if problem is not None:
        raise BadRequest(problem, param="url", code="invalid_webhook_url")
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


def attempts_of(session: Session, deliveries: list[WebhookDelivery]) -> dict[str, list[WebhookAttempt]]:
    """Each delivery's attempts, oldest first, in one query."""
    found: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if found:
        for attempt in session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(found))
                                       .order_by(WebhookAttempt.seq)):
            found[attempt.delivery_id].append(attempt)
    return found
