"""POST /v1/webhook_endpoints/{id}/rotate_secret with a real local receiver verifying as OpenAI's client
does: inside the overlap window a delivery verifies with the old or the new secret, after it only with
the new one (time is moved by setting the window's end, not by waiting)."""
from __future__ import annotations

import time
from datetime import timedelta

import openai
import pytest
from openai import OpenAI
from openai.types.webhooks import WebhookEndpointWithSecret
from sqlalchemy import update

from app.core.db import session_scope
from app.models import WebhookEndpoint
from app.models.base import utcnow
from app.webhooks.delivery import backoff
from tests.api.helpers import assert_error, auth
from tests.conftest import new_tenant
from tests.overrides import insert_job
from tests.receiver import Received, Receiver
from tests.webhooks.helpers import BASE, cancel, deliveries, register
from workers.tasks.deliver_webhook import execute_delivery

DAY = 24 * 3600


def rotate(client, key: str, endpoint_id: str, body: dict | None = None, **headers: str):
    return client.post(f"{BASE}/{endpoint_id}/rotate_secret", headers={**auth(key), **headers}, json=body)


def deliver_one(tenant_id: str, receiver: Receiver) -> Received:
    """End a job, send its one delivery, and return what the receiver got."""
    before = len(receiver.received)
    job_id = insert_job(tenant_id)
    cancel(job_id)
    assert execute_delivery(deliveries(job_id)[0].id) == "delivered"
    return receiver.wait_for(before + 1)[-1]


def verifies(request: Received, secret: str) -> bool:
    try:
        OpenAI(api_key="unused").webhooks.verify_signature(request.body, request.headers, secret=secret)
    except openai.InvalidWebhookSignatureError:
        return False
    return True


def close_the_window(endpoint_id: str) -> None:
    """What 24 hours would do: the previous secret's window ends."""
    with session_scope() as db:
        db.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                   .values(previous_secret_expires_at=utcnow() - timedelta(seconds=1)))


def test_both_secrets_verify_inside_the_window_and_only_the_new_one_after(client, tenant):
    tenant_id, key = tenant
    with Receiver() as receiver:
        endpoint = register(client, key, receiver.url)
        old = endpoint["signing_secret"]
        rotated = rotate(client, key, endpoint["id"])
        assert rotated.status_code == 200, rotated.text
        new = WebhookEndpointWithSecret.model_validate(rotated.json(), strict=True).signing_secret
        assert new != old and rotated.json()["signing_secret_hint"] == new[:10] + "…" + new[-4:]
        expires = rotated.json()["previous_signing_secret_expires_at"]
        assert abs(expires - (rotated.json()["updated_at"] + DAY)) <= 1  # the default window: 24 h

        inside = deliver_one(tenant_id, receiver)
        assert len(inside.headers["webhook-signature"].split()) == 2
        assert verifies(inside, new) and verifies(inside, old)

        close_the_window(endpoint["id"])
        after = deliver_one(tenant_id, receiver)
    assert after.headers["webhook-signature"].count("v1,") == 1
    assert verifies(after, new) and not verifies(after, old)
    fetched = client.get(f"{BASE}/{endpoint['id']}", headers=auth(key)).json()
    assert "signing_secret" not in fetched and fetched["previous_signing_secret_expires_at"] is None


@pytest.mark.parametrize("body, window", [
    ({"expire_previous_in": 0}, None),
    ({"keep_old_secret_active_for_24_hours": False}, None),
    ({"keep_old_secret_active_for_24_hours": True}, DAY),
    ({"expire_previous_in": 90}, 90),
    ({"expire_previous_in": 90, "keep_old_secret_active_for_24_hours": True}, 90),  # seconds win
    ({"expire_previous_in": None}, 600),  # unset: the operator's default
])
def test_the_window_each_body_asks_for(client, tenant, settings_override, body, window):
    settings_override(webhook_secret_overlap=600)
    endpoint = register(client, tenant[1], "http://127.0.0.1:9/hooks")
    rotated = rotate(client, tenant[1], endpoint["id"], body).json()
    expires = rotated["previous_signing_secret_expires_at"]
    assert expires is None if window is None else abs(expires - rotated["updated_at"] - window) <= 1


def test_no_previous_secret_after_an_immediate_rotation(client, tenant):
    tenant_id, key = tenant
    with Receiver() as receiver:
        endpoint = register(client, key, receiver.url)
        new = rotate(client, key, endpoint["id"], {"expire_previous_in": 0}).json()["signing_secret"]
        request = deliver_one(tenant_id, receiver)
    assert verifies(request, new) and not verifies(request, endpoint["signing_secret"])


def test_rotating_inside_the_window_keeps_only_the_secret_just_replaced(client, tenant):
    tenant_id, key = tenant
    with Receiver() as receiver:
        first = register(client, key, receiver.url)
        second = rotate(client, key, first["id"]).json()["signing_secret"]
        third = rotate(client, key, first["id"]).json()["signing_secret"]
        request = deliver_one(tenant_id, receiver)
    assert [verifies(request, s) for s in (first["signing_secret"], second, third)] == [False, True, True]


def test_a_retry_after_the_rotation_is_signed_with_the_new_secret(client, tenant):
    tenant_id, key = tenant
    with Receiver(statuses=(500, 200)) as receiver:
        endpoint = register(client, key, receiver.url)
        job_id = insert_job(tenant_id)
        cancel(job_id)
        [pending] = deliveries(job_id)
        assert execute_delivery(pending.id) == "pending"
        new = rotate(client, key, endpoint["id"], {"expire_previous_in": 0}).json()["signing_secret"]
        time.sleep(backoff(1) + 0.05)
        assert execute_delivery(pending.id) == "delivered"
        first, retry = receiver.wait_for(2)
    assert verifies(first, endpoint["signing_secret"]) and verifies(retry, new)
    assert not verifies(retry, endpoint["signing_secret"])


def test_the_official_client_and_an_idempotency_key(client, tenant, live_url):
    _, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/hooks")
    rotated = OpenAI(api_key=key, base_url=f"{live_url}/v1").webhooks.rotate_secret(
        endpoint["id"], keep_old_secret_active_for_24_hours=True)
    assert rotated.signing_secret.startswith("whsec_") and rotated.signing_secret != endpoint["signing_secret"]
    first = rotate(client, key, endpoint["id"], **{"Idempotency-Key": "rot-1"}).json()
    again = rotate(client, key, endpoint["id"], **{"Idempotency-Key": "rot-1"}).json()
    assert again == first  # a retried request does not rotate twice
    assert_error(rotate(client, key, endpoint["id"], {"expire_previous_in": 5}, **{"Idempotency-Key": "rot-1"}),
                 409, "different request")


@pytest.mark.parametrize("body, param", [
    ({"expire_previous_in": -1}, "expire_previous_in"),
    ({"expire_previous_in": 7 * DAY + 1}, "expire_previous_in"),
    ({"expire_previous_in": "soon"}, "expire_previous_in"),
    ({"expire_previous_in": 1.5}, "expire_previous_in"),
    ({"keep_old_secret_active_for_24_hours": "maybe"}, "keep_old_secret_active_for_24_hours"),
    ({"grace": 60}, "grace"),
])
def test_bad_rotations_are_400_naming_the_field_and_change_nothing(client, tenant, body, param):
    endpoint = register(client, tenant[1], "http://127.0.0.1:9/hooks")
    assert_error(rotate(client, tenant[1], endpoint["id"], body), 400, param=param)
    fetched = client.get(f"{BASE}/{endpoint['id']}", headers=auth(tenant[1])).json()
    assert fetched["signing_secret_hint"] == endpoint["signing_secret_hint"]


def test_another_tenants_or_an_unknown_endpoint_is_not_found(client, tenant):
    endpoint = register(client, tenant[1], "http://127.0.0.1:9/hooks")
    _, other = new_tenant()
    for endpoint_id, key in ((endpoint["id"], other), ("whep_nope", tenant[1])):
        assert_error(rotate(client, key, endpoint_id), 404, "no such webhook endpoint", param="webhook_endpoint_id")
    fetched = client.get(f"{BASE}/{endpoint['id']}", headers=auth(tenant[1])).json()
    assert fetched["signing_secret_hint"] == endpoint["signing_secret_hint"]
