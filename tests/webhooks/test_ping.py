"""POST /v1/webhook_endpoints/{id}/test with a real local receiver: the sample event goes through the
outbox like a job's (sent to the broker once committed, signed, retried, recorded under deliveries)."""
from __future__ import annotations

import json
import time

import pytest
from openai import OpenAI

from app.core.config import get_settings
from app.core.queue import WEBHOOK_ID, held_by_broker
from app.webhooks.delivery import backoff
from tests.api.helpers import assert_error, auth
from tests.conftest import new_tenant
from tests.receiver import Receiver
from tests.webhooks.helpers import BASE, attempts, register
from workers.tasks.deliver_webhook import execute_delivery


def ping(client, key: str, endpoint_id: str, body: dict | None = None, **headers: str):
    return client.post(f"{BASE}/{endpoint_id}/test", headers={**auth(key), **headers}, json=body)


def test_a_ping_arrives_signed_and_is_recorded(client, tenant):
    _, key = tenant
    with Receiver() as receiver:
        endpoint = register(client, key, receiver.url, event_types=["fine_tuning.job.failed"])
        response = ping(client, key, endpoint["id"])
        assert response.status_code == 202, response.text
        queued = response.json()
        assert queued["object"] == "webhook_endpoint.test" and queued["event_type"] == "webhook.test"
        assert queued["webhook_endpoint_id"] == endpoint["id"] and queued["status"] == "pending"
        assert queued["delivery_id"] in held_by_broker(WEBHOOK_ID, get_settings().webhook_queue)

        assert execute_delivery(queued["delivery_id"]) == "delivered"
        [request] = receiver.wait_for(1)
    assert request.headers["webhook-id"] == queued["delivery_id"]
    OpenAI(api_key="unused").webhooks.verify_signature(request.body, request.headers,
                                                       secret=endpoint["signing_secret"])
    event = json.loads(request.body)
    assert (event["id"], event["type"], event["data"]) == (queued["event_id"], "webhook.test", {"id": endpoint["id"]})

    one = client.get(f"{BASE}/{endpoint['id']}/deliveries/{queued['delivery_id']}", headers=auth(key)).json()
    assert (one["status"], one["event_type"], one["fine_tuning_job_id"]) == ("delivered", "webhook.test", None)
    assert [(a["attempt"], a["response_status"]) for a in one["attempts"]] == [(1, 200)]
    listed = client.get(f"{BASE}/{endpoint['id']}/deliveries", headers=auth(key)).json()["data"]
    assert listed == [one]


def test_a_sample_job_event_unwraps_with_the_official_client(client, tenant):
    _, key = tenant
    with Receiver() as receiver:
        endpoint = register(client, key, receiver.url)
        queued = ping(client, key, endpoint["id"], {"event_type": "fine_tuning.job.succeeded"}).json()
        execute_delivery(queued["delivery_id"])
        [request] = receiver.wait_for(1)
    event = OpenAI(api_key="unused", webhook_secret=endpoint["signing_secret"]).webhooks.unwrap(
        request.body, request.headers)
    assert event.type == "fine_tuning.job.succeeded" and event.data.id == "ftjob-sample"


def test_a_failed_ping_is_retried_with_backoff(client, tenant):
    _, key = tenant
    with Receiver(statuses=(503, 200)) as receiver:
        endpoint = register(client, key, receiver.url)
        delivery_id = ping(client, key, endpoint["id"]).json()["delivery_id"]
        assert execute_delivery(delivery_id) == "pending"
        time.sleep(backoff(1) + 0.05)
        assert execute_delivery(delivery_id) == "delivered"
        receiver.wait_for(2)
    assert [(a.attempt, a.response_status) for a in attempts(delivery_id)] == [(1, 503), (2, 200)]


def test_a_disabled_endpoint_refuses_a_ping(client, tenant):
    _, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/hooks")
    client.post(f"{BASE}/{endpoint['id']}", headers=auth(key), json={"disabled": True})
    error = assert_error(ping(client, key, endpoint["id"]), 409, "disabled", param="webhook_endpoint_id")
    assert error["code"] == "webhook_endpoint_disabled"
    assert client.get(f"{BASE}/{endpoint['id']}/deliveries", headers=auth(key)).json()["data"] == []


def test_an_idempotency_key_queues_one_ping(client, tenant):
    _, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/hooks")
    first = ping(client, key, endpoint["id"], **{"Idempotency-Key": "ping-1"}).json()
    assert ping(client, key, endpoint["id"], **{"Idempotency-Key": "ping-1"}).json() == first
    assert len(client.get(f"{BASE}/{endpoint['id']}/deliveries", headers=auth(key)).json()["data"]) == 1


def test_the_short_alias(client, tenant):
    _, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/hooks")
    response = client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=auth(key))
    assert response.status_code == 202
    delivery_id = response.json()["delivery_id"]
    assert client.get(f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery_id}", headers=auth(key)).status_code == 200


@pytest.mark.parametrize("body, param", [
    ({"event_type": "batch.completed"}, "event_type"),
    ({"event_type": None}, "event_type"),
    ({"event": "webhook.test"}, "event"),
])
def test_bad_pings_are_400_naming_the_field(client, tenant, body, param):
    endpoint = register(client, tenant[1], "http://127.0.0.1:9/hooks")
    assert_error(ping(client, tenant[1], endpoint["id"], body), 400, param=param)


def test_another_tenants_endpoint_or_delivery_is_not_found(client, tenant):
    _, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/hooks")
    delivery_id = ping(client, key, endpoint["id"]).json()["delivery_id"]
    _, other = new_tenant()
    assert_error(ping(client, other, endpoint["id"]), 404, "no such webhook endpoint", param="webhook_endpoint_id")
    assert_error(ping(client, key, "whep_nope"), 404, "no such webhook endpoint", param="webhook_endpoint_id")
    assert_error(client.get(f"{BASE}/{endpoint['id']}/deliveries/{delivery_id}", headers=auth(other)), 404,
                 "no such webhook endpoint", param="webhook_endpoint_id")
    own = register(client, key, "http://127.0.0.1:9/other")
    assert_error(client.get(f"{BASE}/{own['id']}/deliveries/{delivery_id}", headers=auth(key)), 404,
                 "no such delivery", param="delivery_id")
