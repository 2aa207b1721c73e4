"""GET /metrics: request counters and latency histograms by route template, and the job, queue, worker
and throughput gauges read from PostgreSQL at scrape time (rows written here, read back there)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.core.db import session_scope
from app.core.embedded import free_port
from app.jobs.events import record_event
from app.models.base import utcnow
from app.models.job import JobStatus
from tests.api.helpers import auth
from tests.harness import ROOT, wait_http
from tests.overrides import insert_job


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_template_and_status_without_a_key(client, tenant):
    _, key = tenant
    route = "/v1/fine_tuning/jobs/{job_id}"
    before = scrape(client)
    for n in range(3):
        client.get(f"/v1/fine_tuning/jobs/ftjob-missing{n}", headers=auth(key))
    client.get("/no/such/path", headers=auth(key))
    client.get("/v1/fine_tuning/jobs")  # no key: refused by authentication, still counted
    after = scrape(client)
    counted = "tuneforge_http_requests_total"
    assert value(after, counted, method="GET", route=route, status="404") - \
        value(before, counted, method="GET", route=route, status="404") == 3
    assert value(after, counted, method="GET", route="unmatched", status="404") > \
        value(before, counted, method="GET", route="unmatched", status="404")
    assert value(after, counted, method="GET", route="unmatched", status="401") > \
        value(before, counted, method="GET", route="unmatched", status="401")
    histogram = "tuneforge_http_request_duration_seconds_count"
    assert value(after, histogram, method="GET", route=route) - value(before, histogram, method="GET", route=route) == 3
    assert value(after, "tuneforge_http_request_duration_seconds_bucket", method="GET", route=route, le="+Inf") >= 3
    assert not any("ftjob-missing" in str(labels) for _, labels in after)  # ids never become labels


def test_job_gauges_come_from_the_database(client, tenant):
    tenant_id, _ = tenant
    for _ in range(2):
        insert_job(tenant_id, status=JobStatus.queued)
    running = insert_job(tenant_id, status=JobStatus.running, worker_id="host-a:42", heartbeat_at=utcnow())
    with session_scope() as db:
        record_event(db, running, "Step 5", type="metrics", data={"step": 5, "samples_per_second": 12.5,
                                                                   "tokens_per_second": 800.0})
        record_event(db, running, "Step 10", type="metrics", data={"step": 10, "samples_per_second": 20.0,
                                                                    "tokens_per_second": 1280.0})
        record_event(db, running, "eval", type="metrics", data={"step": 10, "eval_accuracy": 0.9})
    samples = scrape(client)
    assert value(samples, "tuneforge_queue_depth", tenant=tenant_id) == 2
    assert value(samples, "tuneforge_jobs", state="running") >= 1
    assert {labels for name, labels in samples if name == "tuneforge_jobs"} >= \
        {(("state", s.value),) for s in JobStatus}  # every state, zeros included
    assert value(samples, "tuneforge_job_samples_per_second", job=running, tenant=tenant_id) == 20.0
    assert value(samples, "tuneforge_job_tokens_per_second", job=running, tenant=tenant_id) == 1280.0
    assert value(samples, "tuneforge_training_tokens_per_second") >= 1280.0
    assert 0 <= value(samples, "tuneforge_worker_heartbeat_age_seconds", worker="host-a:42") < 60
    assert abs(value(samples, "tuneforge_worker_last_heartbeat_timestamp_seconds", worker="host-a:42")
               - time.time()) < 60
    assert value(samples, "tuneforge_database_up") == 1 and value(samples, "tuneforge_broker_up") == 1


def test_several_api_processes_report_one_sum(tmp_path, database):
    """uvicorn --workers 2 with PROMETHEUS_MULTIPROC_DIR: whichever process answers /metrics counts all."""
    port = free_port()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), "--workers", "2",
                             "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_http(f"{url}/healthz", proc, timeout=60)
        sent, deadline = 0, time.monotonic() + 60
        with httpx.Client(base_url=url, headers={"Connection": "close"}) as http:
            while True:  # until both workers have taken requests (the second may start late on a busy machine)
                for _ in range(20):
                    http.get("/v1/files")  # 401, counted by whichever process took it
                sent += 20
                pids = {int(f.name.rsplit("_", 1)[1].split(".")[0]) for f in tmp_path.glob("counter_*.db")}
                if len(pids) == 2 or time.monotonic() > deadline:
                    break
                time.sleep(1)
            totals = []
            for _ in range(4):
                samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                           for fam in text_string_to_metric_families(http.get("/metrics").text) for s in fam.samples}
                totals.append(value(samples, "tuneforge_http_requests_total", method="GET", route="unmatched",
                                    status="401"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert len(pids) == 2, pids  # the requests really were spread over two processes
    assert all(total == sent for total in totals), (totals, sent)
