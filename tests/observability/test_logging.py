"""Structured logs: with the JSON format every line is one object, and lines logged while a request for
a job runs (or while a task runs, tested end to end) name the job and the tenant."""
from __future__ import annotations

import io
import json
import logging

from fastapi.testclient import TestClient

from app.observability.context import bound, current
from app.observability.logging import handler
from tests.api.helpers import auth
from tests.overrides import insert_job

log = logging.getLogger("tuneforge.test")


def capture(log_format: str) -> tuple[logging.Handler, io.StringIO]:
    out = handler(log_format)
    buffer = io.StringIO()
    out.setStream(buffer)
    log.addHandler(out)
    log.setLevel(logging.INFO)
    return out, buffer


def test_json_lines_carry_the_bound_ids_extras_and_exceptions():
    out, buffer = capture("json")
    try:
        with bound(job_id="ftjob-1", tenant_id="tenant-1"):
            log.info("hello %s", "there", extra={"step": 3})
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("it failed")
        log.warning("outside")
    finally:
        log.removeHandler(out)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert lines[0]["message"] == "hello there" and lines[0]["level"] == "info" and lines[0]["step"] == 3
    assert (lines[0]["job_id"], lines[0]["tenant_id"], lines[0]["logger"]) == ("ftjob-1", "tenant-1", "tuneforge.test")
    assert "ValueError: boom" in lines[1]["exc_info"]
    assert lines[2]["job_id"] is None and lines[2]["tenant_id"] is None
    assert current() == {"job_id": None, "tenant_id": None}  # bound() restored the context


def test_text_lines_name_the_ids_too():
    out, buffer = capture("text")
    try:
        with bound(job_id="ftjob-2", tenant_id="tenant-2"):
            log.info("plain")
    finally:
        log.removeHandler(out)
    assert "[job=ftjob-2 tenant=tenant-2] plain" in buffer.getvalue()


def test_a_request_for_a_job_logs_its_job_and_tenant(database, tenant):
    """The request middleware makes the request's scope the log context: the tenant once authenticated,
    the job once the route matched. A throwaway route logs from inside a request (sync: threadpool)."""
    from app.main import create_app

    tenant_id, key = tenant
    job_id = insert_job(tenant_id)
    app = create_app()

    @app.get("/v1/fine_tuning/jobs/{job_id}/log-probe")
    def probe(job_id: str) -> dict:
        log.info("inside the request")
        return {}

    out, buffer = capture("json")
    try:
        with TestClient(app) as client:
            assert client.get(f"/v1/fine_tuning/jobs/{job_id}/log-probe", headers=auth(key)).status_code == 200
    finally:
        log.removeHandler(out)
    [line] = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert (line["job_id"], line["tenant_id"]) == (job_id, tenant_id)
