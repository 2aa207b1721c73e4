"""End to end on real `tuneforge api` + `tuneforge worker` processes (training worker and its webhook
delivery worker): a job followed live over SSE, its success POSTed to a local receiver (the first
attempt refused, so the retry goes through Celery and the maintenance pass) and verified with the
official client's `webhooks.unwrap`, /metrics scraped, and every log line JSON naming job and tenant."""
from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from tests.api.helpers import classification_rows, jsonl
from tests.conftest import RUN_ID, new_tenant, quiesce_jobs
from tests.e2e.conftest import wait_for
from tests.harness import Service, start_service
from tests.receiver import Receiver
from tests.sse import messages

LIVE_ENV = {"TUNEFORGE_QUEUE_NAME": f"tuneforge.live.{RUN_ID}", "TUNEFORGE_LOG_FORMAT": "json",
            "TUNEFORGE_WEBHOOK_ALLOW_PRIVATE": "true", "TUNEFORGE_WEBHOOK_RETRY_BASE": "0.5",
            "TUNEFORGE_EVENTS_POLL_INTERVAL": "0.2"}


@pytest.fixture(scope="module")
def live(database, registered_tiny_model, tmp_path_factory) -> Iterator[Service]:
    quiesce_jobs()
    svc = start_service(dict(os.environ, **LIVE_ENV), log_path=tmp_path_factory.mktemp("live") / "service.log")
    yield svc
    svc.stop()


def follow(url: str, key: str) -> list:
    """Read the job's event stream from the start until the server ends it."""
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as response:
        assert response.status_code == 200
        return list(messages(response.iter_lines()))


def test_follow_a_job_live_get_its_webhook_and_see_it_in_metrics_and_logs(live):
    tenant_id, key = new_tenant()
    client = OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0, timeout=60)
    with Receiver(statuses=(500, 200)) as receiver:
        endpoint = client.webhooks.create(url=receiver.url, name="ci",
                                          event_types=["fine_tuning.job.succeeded", "fine_tuning.job.failed"])
        assert endpoint.signing_secret.startswith("whsec_")
        train = client.files.create(file=("train.jsonl", io.BytesIO(jsonl(classification_rows(32)))),
                                    purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(model="tiny-bert", training_file=train, extra_body={"method": {
            "type": "bitfit", "bitfit": {"hyperparameters": {"n_epochs": 2, "batch_size": 8}}}})
        stream = follow(f"{live.url}/v1/fine_tuning/jobs/{job.id}/events?stream=true", key)
        requests = receiver.wait_for(2, timeout=60)

    events = [m for m in stream if m.id]
    assert stream[-1].event == "done" and json.loads(stream[-1].data)["status"] == "succeeded"
    assert [json.loads(m.data)["id"] for m in events] == [m.id for m in events]
    listed = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert [m.id for m in events] == [e.id for e in reversed(listed)]  # every event, oldest first
    assert any(json.loads(m.data)["type"] == "metrics" for m in events)

    assert len({r.headers["webhook-id"] for r in requests}) == 1
    event = client.webhooks.unwrap(requests[-1].body, requests[-1].headers, secret=endpoint.signing_secret)
    assert event.type == "fine_tuning.job.succeeded" and event.data.id == job.id
    deliveries = wait_for(lambda: httpx.get(f"{live.url}/v1/webhook_endpoints/{endpoint.id}/deliveries",
                                            headers={"Authorization": f"Bearer {key}"}).json()["data"],
                          lambda d: d and d[0]["status"] == "delivered", timeout=30)
    assert [a["response_status"] for a in deliveries[0]["attempts"]] == [500, 200]

    metrics = httpx.get(f"{live.url}/metrics").text
    assert 'tuneforge_jobs{state="succeeded"}' in metrics
    assert 'route="/v1/fine_tuning/jobs/{job_id}/events"' in metrics
    assert 'tuneforge_webhook_deliveries{state="delivered"}' in metrics

    lines = [json.loads(line) for line in live.log_path.read_text().splitlines() if line.startswith("{")]
    about_job = [line for line in lines if line.get("job_id") == job.id]
    assert about_job and all(line["tenant_id"] == tenant_id for line in about_job)
    loggers = {line["logger"] for line in about_job}
    assert {"uvicorn.access", "celery.app.trace", "workers.tasks.deliver_webhook"} <= loggers, loggers
