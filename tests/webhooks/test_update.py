"""POST (and PATCH) /v1/webhook_endpoints/{id} with real local receivers: a new url gets the next event
and the next retry, new event types decide the next job's deliveries, a disabled endpoint gets nothing
(its pending deliveries wait, and go once it is enabled again); every bad field a 400 naming it."""
from __future__ import annotations

import json
import time

import pytest
from openai import OpenAI
from openai.types.webhooks import WebhookEndpoint

from app.core.config import get_settings
from app.core.queue import WEBHOOK_ID, held_by_broker
from app.webhooks import recovery
from app.webhooks.delivery import backoff
from tests.api.helpers import assert_error, auth
from tests.conftest import new_tenant
from tests.overrides import insert_job
from tests.receiver import Receiver
from tests.webhooks.helpers import BASE, cancel, deliveries, delivery, register
from workers.tasks.deliver_webhook import execute_delivery


def update(client, key: str, endpoint_id: str, body: dict, method: str = "POST"):
    return client.request(method, f"{BASE}/{endpoint_id}", headers=auth(key), json=body)


def test_a_new_url_receives_the_next_event_and_the_pending_retry(client, tenant):
    tenant_id, key = tenant
    with Receiver(statuses=(500,)) as old, Receiver() as new:
        endpoint = register(client, key, old.url)
        failed_once = insert_job(tenant_id)
        cancel(failed_once)
        [retried] = deliveries(failed_once)
        assert execute_delivery(retried.id) == "pending"

        response = update(client, key, endpoint["id"], {"url": new.url})
        assert response.status_code == 200, response.text
        changed = WebhookEndpoint.model_validate(response.json(), strict=True)
        assert changed.url == new.url and changed.updated_at >= changed.created_at
        assert client.get(f"{BASE}/{endpoint['id']}", headers=auth(key)).json()["url"] == new.url

        job_id = insert_job(tenant_id)
        cancel(job_id)
        assert execute_delivery(deliveries(job_id)[0].id) == "delivered"
        time.sleep(backoff(1) + 0.05)
        assert execute_delivery(retried.id) == "delivered"
        received = new.wait_for(2)
    assert len(old.received) == 1
    assert {json.loads(r.body)["data"]["id"] for r in received} == {job_id, failed_once}


def test_new_event_types_decide_the_next_jobs_deliveries(client, tenant):
    tenant_id, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/hooks")
    body = update(client, key, endpoint["id"], {"event_types": ["fine_tuning.job.succeeded"] * 2}).json()
    assert body["event_types"] == ["fine_tuning.job.succeeded"]  # duplicates dropped, as at creation
    job_id = insert_job(tenant_id)
    cancel(job_id)
    assert deliveries(job_id) == []


def test_a_disabled_endpoint_gets_nothing_until_enabled_again(client, tenant, quiet_queue):
    tenant_id, key = tenant
    with Receiver() as receiver:
        endpoint = register(client, key, receiver.url)
        before = insert_job(tenant_id)
        cancel(before)
        [waiting] = deliveries(before)  # sent to the broker, not yet attempted

        body = update(client, key, endpoint["id"], {"disabled": True}).json()
        assert body["disabled"] is True
        during = insert_job(tenant_id)
        cancel(during)
        assert deliveries(during) == []  # no new delivery while disabled
        assert execute_delivery(waiting.id) == "skipped"  # the pending one waits
        assert recovery.send_due([waiting.id]) == []

        assert update(client, key, endpoint["id"], {"disabled": False}).json()["disabled"] is False
        assert delivery(waiting.id).enqueued_at is not None  # sent again once enabled
        assert waiting.id in held_by_broker(WEBHOOK_ID, get_settings().webhook_queue)
        assert execute_delivery(waiting.id) == "delivered"
        after = insert_job(tenant_id)
        cancel(after)
        assert execute_delivery(deliveries(after)[0].id) == "delivered"
        received = receiver.wait_for(2)
    assert [json.loads(r.body)["data"]["id"] for r in received] == [before, after]


def test_patch_the_alias_and_the_official_client_update_too(client, tenant, live_url):
    _, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/a")
    patched = update(client, key, endpoint["id"], {"name": "ci hooks"}, method="PATCH")
    assert patched.status_code == 200 and patched.json()["name"] == "ci hooks"
    aliased = client.post(f"/v1/webhooks/{endpoint['id']}", headers=auth(key), json={"url": "http://127.0.0.1:9/b"})
    assert aliased.json()["url"] == "http://127.0.0.1:9/b"
    openai = OpenAI(api_key=key, base_url=f"{live_url}/v1")
    updated = openai.webhooks.update(endpoint["id"], url="http://127.0.0.1:9/c", event_types=["fine_tuning.job.failed"])
    assert (updated.url, updated.event_types, updated.name) == ("http://127.0.0.1:9/c", ["fine_tuning.job.failed"],
                                                                "ci hooks")


def test_an_unchanged_update_keeps_updated_at(client, tenant):
    _, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/a", name="same")
    time.sleep(1.05)  # updated_at has whole seconds
    same = update(client, key, endpoint["id"], {"name": "same", "disabled": False}).json()
    assert same["updated_at"] == endpoint["updated_at"]
    assert update(client, key, endpoint["id"], {"name": "other"}).json()["updated_at"] > endpoint["updated_at"]


@pytest.mark.parametrize("body, param, fragment", [
    ({}, None, "at least one of url, event_types, name, disabled"),
    ({"url": "ftp://example.com/hook"}, "url", "http:// or https://"),
    ({"url": "http://user:pw@127.0.0.1/hook"}, "url", "no credentials"),
    ({"url": None}, "url", "string"),
    ({"event_types": ["batch.completed"]}, "event_types.0", ""),
    ({"event_types": []}, "event_types", ""),
    ({"name": ""}, "name", ""),
    ({"name": "a\nb"}, "name", ""),
    ({"disabled": "sometimes"}, "disabled", "boolean"),
    ({"enabled_events": ["fine_tuning.job.failed"]}, "enabled_events", "extra"),
])
def test_bad_updates_are_400_naming_the_field(client, tenant, body, param, fragment):
    endpoint = register(client, tenant[1], "http://127.0.0.1:9/hooks")
    for method in ("POST", "PATCH"):
        response = update(client, tenant[1], endpoint["id"], body, method=method)
        error = assert_error(response, 400, fragment)
        assert error["param"] == param, error
    unchanged = {field: value for field, value in endpoint.items() if field != "signing_secret"}
    assert client.get(f"{BASE}/{endpoint['id']}", headers=auth(tenant[1])).json() == unchanged


def test_a_private_url_is_refused_on_update_as_at_creation(client, tenant, settings_override):
    endpoint = register(client, tenant[1], "https://hooks.example.com/x")
    settings_override(webhook_allow_private=False)
    error = assert_error(update(client, tenant[1], endpoint["id"], {"url": "http://10.0.0.8/x"}), 400,
                         "a private or local address", param="url")
    assert error["code"] == "invalid_webhook_url"
    assert client.get(f"{BASE}/{endpoint['id']}", headers=auth(tenant[1])).json()["url"] == endpoint["url"]


def test_another_tenants_or_an_unknown_endpoint_is_not_found(client, tenant):
    endpoint = register(client, tenant[1], "http://127.0.0.1:9/hooks")
    _, other = new_tenant()
    for endpoint_id, key in ((endpoint["id"], other), ("whep_nope", tenant[1])):
        for method in ("POST", "PATCH"):
            assert_error(update(client, key, endpoint_id, {"disabled": True}, method=method), 404,
                         "no such webhook endpoint", param="webhook_endpoint_id")
    assert client.get(f"{BASE}/{endpoint['id']}", headers=auth(tenant[1])).json()["disabled"] is False
