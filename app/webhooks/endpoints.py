"""/v1/webhook_endpoints: OpenAI's webhook endpoint surface (`client.webhooks.create/list/retrieve/delete`),
plus `GET …/{id}/deliveries`, every event sent there with each attempt. The router is also mounted at
/v1/webhooks (hidden from the schema), the shorter name."""
from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import SessionDep, TenantDep
from app.api.pagination import Limit, list_body, paginate
from app.idempotency import service as idempotency
from app.models import WebhookDelivery, WebhookEndpoint
from app.webhooks import service
from app.webhooks.schemas import CreateWebhookRequest, deleted_object, delivery_object, endpoint_object

router = APIRouter(tags=["webhooks"])


@router.post("")
def create_endpoint(body: CreateWebhookRequest, request: Request, session: SessionDep, tenant: TenantDep) -> dict:
    """Register a URL; the answer carries `signing_secret`, shown this once (later reads show a hint).
    Honours `Idempotency-Key` (a replay returns the same endpoint and secret)."""
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    fingerprint = idempotency.fingerprint("webhook_endpoints.create", body.model_dump())
    if key is not None and (stored := idempotency.replay(session, tenant.id, key, fingerprint)) is not None:
        return stored
    response = endpoint_object(service.create_endpoint(session, tenant.id, body), with_secret=True)
    if key is not None:
        idempotency.remember(session, tenant.id, key, fingerprint, response)
    session.commit()
    return response


@router.get("")
def list_endpoints(session: SessionDep, tenant: TenantDep, after: str | None = None, limit: Limit = 20) -> dict:
    rows, has_more = paginate(session, service.list_endpoints(tenant.id), WebhookEndpoint, after, limit)
    return list_body([endpoint_object(e) for e in rows], has_more)


@router.get("/{webhook_endpoint_id}")
def retrieve_endpoint(webhook_endpoint_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    return endpoint_object(service.get_endpoint(session, tenant.id, webhook_endpoint_id))


@router.delete("/{webhook_endpoint_id}")
def delete_endpoint(webhook_endpoint_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    service.delete_endpoint(session, tenant.id, webhook_endpoint_id)
    session.commit()
    return deleted_object(webhook_endpoint_id)


@router.get("/{webhook_endpoint_id}/deliveries")
def list_deliveries(webhook_endpoint_id: str, session: SessionDep, tenant: TenantDep, after: str | None = None,
                    limit: Limit = 20) -> dict:
    """Events sent (or being sent) to this endpoint, newest first: status, attempts and what each got back."""
    endpoint = service.get_endpoint(session, tenant.id, webhook_endpoint_id)
    rows, has_more = paginate(session, service.deliveries_query(endpoint), WebhookDelivery, after, limit)
    attempts = service.attempts_of(session, rows)
    return list_body([delivery_object(d, attempts[d.id]) for d in rows], has_more)
