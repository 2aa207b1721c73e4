"""The outbox and its delivery, on real PostgreSQL, Redis and a real local HTTP receiver: a job's ending
writes deliveries in its own transaction, the task body (what the Celery task runs) POSTs them signed
as OpenAI's client verifies, failures retry with backoff, every attempt is recorded, and the
maintenance pass recovers what a dead worker or a lost message left behind."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from openai import OpenAI
from sqlalchemy import update

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.queue import WEBHOOK_ID, held_by_broker
from app.jobs import state
from app.jobs.maintenance import run_once
from app.models import Job, WebhookDelivery
from app.models.base import utcnow
from app.models.job import JobStatus
from app.webhooks import recovery
from app.webhooks.delivery import backoff, claim
from tests.api.helpers import auth
from tests.overrides import insert_job
from tests.receiver import Receiver
from tests.webhooks.helpers import attempts, cancel, deliveries, register
from workers.tasks.deliver_webhook import execute_delivery


def test_a_cancelled_job_is_posted_signed_as_openais_client_verifies(client, tenant):
    tenant_id, key = tenant
    with Receiver() as receiver:
        endpoint = register(client, key, receiver.url)
        job_id = insert_job(tenant_id)
        cancel(job_id)
        [delivery] = deliveries(job_id)
        assert delivery.status == "pending" and delivery.enqueued_at is not None  # sent once the cancel committed
        assert delivery.id in held_by_broker(WEBHOOK_ID, get_settings().webhook_queue)

        assert execute_delivery(delivery.id) == "delivered"
        [request] = receiver.wait_for(1)
    assert request.path == "/hooks" and request.headers["webhook-id"] == delivery.id
    assert request.headers["webhook-signature"].startswith("v1,")
    event = OpenAI(api_key="unused", webhook_secret=endpoint["signing_secret"]).webhooks.unwrap(
        request.body, request.headers)
    assert event.type == "fine_tuning.job.cancelled" and event.data.id == job_id and event.object == "event"
    assert json.loads(request.body)["id"] == delivery.event_id

    listed = client.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries", headers=auth(key)).json()["data"]
    assert [(d["id"], d["status"], d["fine_tuning_job_id"]) for d in listed] == [(delivery.id, "delivered", job_id)]
    assert [(a["attempt"], a["response_status"], a["error"]) for a in listed[0]["attempts"]] == [(1, 200, None)]
    assert execute_delivery(delivery.id) == "skipped"  # a duplicate message sends nothing


def test_a_wrong_secret_or_altered_body_fails_verification(client, tenant):
    import openai

    tenant_id, key = tenant
    with Receiver() as receiver:
        secret = register(client, key, receiver.url)["signing_secret"]
        job_id = insert_job(tenant_id)
        cancel(job_id)
        execute_delivery(deliveries(job_id)[0].id)
        [request] = receiver.wait_for(1)
    other_secret = register(client, key, receiver.url)["signing_secret"]
    hooks = OpenAI(api_key="unused").webhooks
    hooks.verify_signature(request.body, request.headers, secret=secret)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        hooks.verify_signature(request.body, request.headers, secret=other_secret)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        hooks.verify_signature(request.body.replace(b"cancelled", b"succeeded"), request.headers, secret=secret)


def test_each_ending_goes_to_the_endpoints_that_subscribed_to_it(client, tenant):
    tenant_id, key = tenant
    succeeded_only = register(client, key, "http://127.0.0.1:9/s", event_types=["fine_tuning.job.succeeded"])
    every = register(client, key, "http://127.0.0.1:9/all")
    job_ids = {status: insert_job(tenant_id, worker_id="w1") for status in ("succeeded", "failed", "cancelled")}
    with session_scope() as db:
        assert state.succeed(db, job_ids["succeeded"], "w1")
        state.finish(db, job_ids["failed"], "w1", JobStatus.failed, "Job failed: boom", level="error")
    cancel(job_ids["cancelled"])
    with session_scope() as db:  # the worker's own record of the cancel: no second event
        state.finish(db, job_ids["cancelled"], "w1", JobStatus.cancelled, "Training stopped at step 3")
    sent = {status: [(d.endpoint_id, d.event_type) for d in deliveries(job_id)] for status, job_id in job_ids.items()}
    assert sent == {"succeeded": [(succeeded_only["id"], "fine_tuning.job.succeeded"),
                                  (every["id"], "fine_tuning.job.succeeded")],
                    "failed": [(every["id"], "fine_tuning.job.failed")],
                    "cancelled": [(every["id"], "fine_tuning.job.cancelled")]}
    assert len({d.event_id for d in deliveries(job_ids["succeeded"])}) == 1  # one event, one delivery per endpoint


def test_no_ending_no_delivery_and_a_rolled_back_ending_leaves_none(client, tenant):
    tenant_id, key = tenant
    register(client, key, "http://127.0.0.1:9/hooks")
    job_id = insert_job(tenant_id, status=JobStatus.queued)
    with session_scope() as db:
        state.request_pause(db, db.get(Job, job_id))
    assert deliveries(job_id) == []
    with pytest.raises(RuntimeError), session_scope() as db:
        state.cancel(db, db.get(Job, job_id))
        raise RuntimeError("the request failed after the cancel")
    assert deliveries(job_id) == []
    with session_scope() as db:
        assert db.get(Job, job_id).status == "paused"


def test_failures_retry_with_backoff_and_every_attempt_is_recorded(client, tenant):
    tenant_id, key = tenant
    with Receiver(statuses=(500, 503, 204)) as receiver:
        register(client, key, receiver.url)
        job_id = insert_job(tenant_id)
        cancel(job_id)
        [delivery] = deliveries(job_id)
        assert execute_delivery(delivery.id) == "pending"
        assert execute_delivery(delivery.id) == "skipped"  # not due yet
        assert recovery.send_due([delivery.id]) == []
        time.sleep(backoff(1) + 0.05)
        assert recovery.send_due([delivery.id]) == [delivery.id]  # the maintenance pass sends a due retry
        assert execute_delivery(delivery.id) == "pending"
        time.sleep(backoff(2) + 0.05)
        assert execute_delivery(delivery.id) == "delivered"
        received = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in received}) == 1  # the receiver's idempotency key is stable
    assert len({r.body for r in received}) == 1
    assert [(a.attempt, a.response_status) for a in attempts(delivery.id)] == [(1, 500), (2, 503), (3, 204)]
    assert "HTTP 500" in attempts(delivery.id)[0].error


def test_backoff_doubles_up_to_its_cap(settings_override):
    settings_override(webhook_retry_base=30.0, webhook_retry_max=600.0)
    assert [backoff(n) for n in range(1, 7)] == [30, 60, 120, 240, 480, 600]


def test_attempts_used_up_fail_the_delivery(client, tenant):
    tenant_id, key = tenant
    with Receiver(statuses=(500,)) as receiver:
        endpoint = register(client, key, receiver.url)
        job_id = insert_job(tenant_id)
        cancel(job_id)
        [delivery] = deliveries(job_id)
        outcomes = []
        for _ in range(get_settings().webhook_max_attempts):
            time.sleep(get_settings().webhook_retry_max)
            outcomes.append(execute_delivery(delivery.id))
    assert outcomes == ["pending", "pending", "failed"]
    [listed] = client.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries", headers=auth(key)).json()["data"]
    assert listed["status"] == "failed" and listed["attempt_count"] == 3 and len(listed["attempts"]) == 3
    assert listed["next_attempt_at"] is None and "HTTP 500" in listed["last_error"]


def test_unreachable_slow_and_now_private_receivers_are_recorded_failures(client, tenant, settings_override):
    tenant_id, key = tenant
    with Receiver(delay=3.0) as slow:
        targets = {"refused": "http://127.0.0.1:9/hooks", "slow": slow.url, "unknown": "http://no-such-host.invalid/"}
        for url in targets.values():
            register(client, key, url)
        job_id = insert_job(tenant_id)
        cancel(job_id)
        for delivery in deliveries(job_id):
            execute_delivery(delivery.id)
    errors = {d.last_error.split(":")[0] for d in deliveries(job_id)}
    assert errors == {"ConnectError", "ReadTimeout", "not sent"}
    by_error = {d.last_error.split(":")[0]: d for d in deliveries(job_id)}  # the endpoints' order is not theirs
    assert "'no-such-host.invalid' does not resolve" in by_error["not sent"].last_error
    settings_override(webhook_allow_private=False)  # the host resolves to a private address at send time
    time.sleep(get_settings().webhook_retry_max)
    delivery = by_error["ConnectError"]
    execute_delivery(delivery.id)
    assert attempts(delivery.id)[-1].error.startswith("not sent: url host '127.0.0.1' resolves to 127.0.0.1")


def test_a_worker_that_died_mid_attempt_is_recovered_by_the_maintenance_pass(client, tenant, quiet_queue):
    tenant_id, key = tenant
    with Receiver() as receiver:
        register(client, key, receiver.url)
        job_id = insert_job(tenant_id)
        cancel(job_id)
        [delivery] = deliveries(job_id)
        with session_scope() as db:
            assert claim(db, delivery.id, "dead-worker:1") is not None
            db.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                       .values(heartbeat_at=utcnow() - timedelta(hours=1)))
        done = run_once()
        assert delivery.id in done["webhooks_reaped"]
        [lost] = attempts(delivery.id)
        assert lost.worker_id == "dead-worker:1" and "stopped responding" in lost.error
        time.sleep(get_settings().webhook_retry_base + 0.05)
        assert delivery.id in run_once()["webhooks_sent"]
        assert execute_delivery(delivery.id) == "delivered"
        receiver.wait_for(1)
    assert [a.attempt for a in attempts(delivery.id)] == [1, 2]


def test_a_message_the_broker_lost_is_sent_again(client, tenant, settings_override, quiet_queue):
    tenant_id, key = tenant
    register(client, key, "http://127.0.0.1:9/hooks")
    job_id = insert_job(tenant_id)
    cancel(job_id)
    [delivery] = deliveries(job_id)
    from tests.conftest import _purge_test_queues

    _purge_test_queues()  # Redis flushed: the message is gone, the row still says sent
    with session_scope() as db:
        db.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                   .values(enqueued_at=utcnow() - timedelta(seconds=get_settings().resend_after + 1)))
    done = run_once()
    assert delivery.id in done["webhooks_lost"] and delivery.id in done["webhooks_sent"]
    assert delivery.id in held_by_broker(WEBHOOK_ID, get_settings().webhook_queue)


def test_deleting_the_endpoint_drops_its_pending_deliveries(client, tenant):
    tenant_id, key = tenant
    endpoint = register(client, key, "http://127.0.0.1:9/hooks")
    job_id = insert_job(tenant_id)
    cancel(job_id)
    [delivery] = deliveries(job_id)
    assert client.delete(f"/v1/webhook_endpoints/{endpoint['id']}", headers=auth(key)).status_code == 200
    assert deliveries(job_id) == [] and execute_delivery(delivery.id) == "skipped"
