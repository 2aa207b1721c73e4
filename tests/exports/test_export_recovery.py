"""Exports recover with no request, in the maintenance pass (`run_once`) that recovers jobs: real
PostgreSQL and Redis; the worker's task runs in-process (`execute_export`), as a worker would run it.
tests/e2e/test_recovery.py and tests/e2e/test_faults.py do the same with real worker processes."""
from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.ids import new_id
from app.core.queue import EXPORT_ID, held_by_broker
from app.jobs.maintenance import run_once
from app.models import JobExport
from app.models.base import utcnow
from tests.conftest import REDIS_URL
from tests.exports.helpers import finished_job
from tests.exports.test_exports import lora_artifact  # noqa: F401  (a fixture)
from workers.tasks.export_job import execute_export


@pytest.fixture(autouse=True)
def _isolated(quiet_queue):
    """Only this test's exports are waiting, and the test queue starts empty."""


def _export(tenant_id: str, job_id: str | None = None, **values) -> str:
    """A committed export row of a finished job of `tenant_id`, in the state `values` give it."""
    export_id = new_id("ftexp-")
    with session_scope() as db:
        db.add(JobExport(id=export_id, job_id=job_id or finished_job(tenant_id), tenant_id=tenant_id, **values))
    return export_id


def _row(export_id: str) -> JobExport:
    with session_scope() as db:
        export = db.get(JobExport, export_id)
        db.expunge(export)
        return export


def _stale() -> dict:
    beat = utcnow() - timedelta(seconds=get_settings().heartbeat_timeout + 30)
    return {"status": "running", "worker_id": "dead:1", "heartbeat_at": beat, "started_at": beat, "enqueued_at": beat}


def test_export_whose_worker_stopped_beating_is_requeued_sent_and_succeeds(tenant, registered_tiny_model,
                                                                           lora_artifact):  # noqa: F811
    tenant_id, _ = tenant
    export_id = _export(tenant_id, finished_job(tenant_id, lora_artifact), attempt=1, **_stale())
    alive = _export(tenant_id, **{**_stale(), "attempt": 1, "worker_id": "alive:1", "heartbeat_at": utcnow()})
    done = run_once()
    assert export_id in done["exports_reaped"] and alive not in done["exports_reaped"]
    assert export_id in done["exports_sent"] and export_id in held_by_broker(EXPORT_ID)
    export = _row(export_id)
    assert export.status == "queued" and export.worker_id is None and export.enqueued_at is not None
    assert _row(alive).status == "running"
    assert export_id not in run_once()["exports_sent"]  # sent once
    assert execute_export(export_id) == "succeeded"
    assert _row(export_id).attempt == 2


def test_export_that_keeps_dying_fails_after_max_attempts(tenant):
    export_id = _export(tenant[0], attempt=get_settings().max_attempts, **_stale())
    assert export_id in run_once()["exports_reaped"]
    export = _row(export_id)
    assert export.status == "failed" and export.finished_at and export.error["code"] == "worker_lost"
    assert "this export stopped responding" in export.error["message"] and "giving up" in export.error["message"]


def test_export_whose_message_the_broker_lost_is_sent_again(tenant, monkeypatch):
    monkeypatch.setattr(get_settings(), "resend_after", 0.0)
    export_id = _export(tenant[0], status="queued", attempt=0)  # never sent: the broker refused it
    assert export_id in run_once()["exports_sent"]
    assert export_id in held_by_broker(EXPORT_ID)
    assert export_id not in run_once()["exports_lost"]  # still held: nothing to do
    redis.Redis.from_url(REDIS_URL).delete(get_settings().queue_name)  # what FLUSHALL does
    done = run_once()
    assert export_id in done["exports_lost"] and export_id in done["exports_sent"]
    assert export_id in held_by_broker(EXPORT_ID) and _row(export_id).status == "queued"
