"""/v1/webhook_endpoints: OpenAI's webhook endpoint surface (`client.webhooks.create/list/retrieve/update/
delete/rotate_secret/test`), plus `GET …/{id}/deliveries`, every event sent there with each attempt. The
router is also mounted at /v1/webhooks (hidden from the schema), the shorter name."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from app.api.deps import SessionDep, TenantDep
from app.api.pagination import Limit, list_body, paginate
from app.idempotency import service as idempotency
from app.models import WebhookDelivery, WebhookEndpoint
from app.webhooks import service
from app.webhooks.schemas import (CreateWebhookRequest, PingWebhookRequest, RotateSecretRequest, UpdateWebhookRequest,
                                  deleted_object, delivery_object, endpoint_object, ping_object)

router = APIRouter(tags=["webhooks"])


def _once(request: Request, session: Session, tenant_id: str, operation: tuple[Any, ...],
          respond: Callable[[], dict]) -> dict:
    """Run `respond` and commit, honouring `Idempotency-Key`: a replay returns the first response (the
    same secret, the same test delivery) instead of acting twice."""
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    fingerprint = idempotency.fingerprint(*operation)
    if key is not None and (stored := idempotency.replay(session, tenant_id, key, fingerprint)) is not None:
        return stored
    response = respond()
    if key is not None:
        idempotency.remember(session, tenant_id, key, fingerprint, response)
    session.commit()
    return response


@router.post("")
def create_endpoint(body: CreateWebhookRequest, request: Request, session: SessionDep, tenant: TenantDep) -> dict:
    """Register a URL; the answer carries `signing_secret`, shown this once (later reads show a hint).
    Honours `Idempotency-Key` (a replay returns the same endpoint and secret)."""
    return _once(request, session, tenant.id, ("webhook_endpoints.create", body.model_dump()),
                 lambda: endpoint_object(service.create_endpoint(session, tenant.id, body), with_secret=True))


@router.get("")
def list_endpoints(session: SessionDep, tenant: TenantDep, after: str | None = None, limit: Limit = 20) -> dict:
    rows, has_more = paginate(session, service.list_endpoints(tenant.id), WebhookEndpoint, after, limit)
    return list_body([endpoint_object(e) for e in rows], has_more)


@router.get("/{webhook_endpoint_id}")
def retrieve_endpoint(webhook_endpoint_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    return endpoint_object(service.get_endpoint(session, tenant.id, webhook_endpoint_id))


@router.post("/{webhook_endpoint_id}")
def update_endpoint(webhook_endpoint_id: str, body: UpdateWebhookRequest, session: SessionDep,
                    tenant: TenantDep) -> dict:
    """Change url, event_types, name or disabled (only the fields given). A new url receives the next
    attempt, pending retries included; a disabled endpoint gets no new deliveries and its pending ones
    wait; enabling it again sends them."""
    endpoint = service.update_endpoint(session, tenant.id, webhook_endpoint_id, body)
    session.commit()
    return endpoint_object(endpoint)


@router.patch("/{webhook_endpoint_id}")
def patch_endpoint(webhook_endpoint_id: str, body: UpdateWebhookRequest, session: SessionDep,
                   tenant: TenantDep) -> dict:
    """The same update as `POST /v1/webhook_endpoints/{id}`, for clients that PATCH."""
    return update_endpoint(webhook_endpoint_id, body, session, tenant)


@router.delete("/{webhook_endpoint_id}")
def delete_endpoint(webhook_endpoint_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    service.delete_endpoint(session, tenant.id, webhook_endpoint_id)
    session.commit()
    return deleted_object(webhook_endpoint_id)


@router.post("/{webhook_endpoint_id}/rotate_secret")
def rotate_secret(webhook_endpoint_id: str, request: Request, session: SessionDep, tenant: TenantDep,
                  body: RotateSecretRequest | None = None) -> dict:
    """A new `signing_secret`, shown this once. The replaced secret keeps signing beside it (two
    signatures in `webhook-signature`) for `expire_previous_in` seconds (default 24 h), so receivers
    switch without dropping an event. Honours `Idempotency-Key`."""
    body = body or RotateSecretRequest()
    return _once(request, session, tenant.id,
                 ("webhook_endpoints.rotate_secret", webhook_endpoint_id, body.model_dump()),
                 lambda: endpoint_object(service.rotate_secret(session, tenant.id, webhook_endpoint_id, body),
                                         with_secret=True))


@router.post("/{webhook_endpoint_id}/test", status_code=202)
def test_endpoint(webhook_endpoint_id: str, request: Request, session: SessionDep, tenant: TenantDep,
                  body: PingWebhookRequest | None = None) -> dict:
    """Queue a sample event (`webhook.test` by default) for this endpoint, sent signed and retried like any
    other; follow it at `…/deliveries/{delivery_id}`. 409 while the endpoint is disabled. Honours
    `Idempotency-Key`."""
    body = body or PingWebhookRequest()
    return _once(request, session, tenant.id, ("webhook_endpoints.test", webhook_endpoint_id, body.model_dump()),
                 lambda: ping_object(service.ping(session, tenant.id, webhook_endpoint_id, body)))


@router.get("/{webhook_endpoint_id}/deliveries")
def list_deliveries(webhook_endpoint_id: str, session: SessionDep, tenant: TenantDep, after: str | None = None,
                    limit: Limit = 20) -> dict:
    """Events sent (or being sent) to this endpoint, newest first: status, attempts and what each got back."""
    endpoint = service.get_endpoint(session, tenant.id, webhook_endpoint_id)
    rows, has_more = paginate(session, service.deliveries_query(endpoint), WebhookDelivery, after, limit)
    attempts = service.attempts_of(session, rows)
    return list_body([delivery_object(d, attempts[d.id]) for d in rows], has_more)


@router.get("/{webhook_endpoint_id}/deliveries/{delivery_id}")
def retrieve_delivery(webhook_endpoint_id: str, delivery_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    """One delivery (e.g. the test ping POST …/test queued) with its attempts."""
    endpoint = service.get_endpoint(session, tenant.id, webhook_endpoint_id)
    delivery = service.get_delivery(session, endpoint, delivery_id)
    return delivery_object(delivery, service.attempts_of(session, [delivery])[delivery.id])
