"""Reaper and reconciler against the real database and broker."""
from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.ids import new_id
from app.jobs.maintenance import run_once
from app.models import Job, JobEvent
from app.models.base import utcnow
from tests.conftest import REDIS_URL


@pytest.fixture(autouse=True)
def _isolated(quiet_queue):
    """Only this test's jobs are queued, and the test queue starts empty."""


def _job(tenant_id: str, **values) -> str:
    job_id = new_id("ftjob-")
    with session_scope() as db:
        db.add(Job(id=job_id, tenant_id=tenant_id, model="tiny-bert", training_file="file-x", seed=1,
                   method={"type": "bitfit", "bitfit": {"hyperparameters": {"n_epochs": 1, "batch_size": 4,
                                                                            "learning_rate_multiplier": 1.0}}},
                   **values))
    return job_id


def _state(job_id: str) -> tuple[Job, list[str]]:
    with session_scope() as db:
        job = db.get(Job, job_id)
        events = list(db.scalars(select(JobEvent.message).where(JobEvent.job_id == job_id)))
        db.expunge(job)
        return job, events


def _queued_messages() -> int:
    return redis.Redis.from_url(REDIS_URL).llen(get_settings().queue_name)


def test_stale_running_job_is_requeued_and_resent(tenant):
    stale = utcnow() - timedelta(seconds=get_settings().heartbeat_timeout + 30)
    job_id = _job(tenant[0], status="running", attempt=1, worker_id="dead:1", heartbeat_at=stale)
    fresh_id = _job(tenant[0], status="running", attempt=1, worker_id="alive:1", heartbeat_at=utcnow())
    before = _queued_messages()
    done = run_once()
    assert job_id in done["reaped"] and fresh_id not in done["reaped"]
    assert job_id in done["sent"]
    job, events = _state(job_id)
    assert job.status == "queued" and job.worker_id is None and job.enqueued_at is not None
    assert any("re-queued for attempt 2" in m for m in events)
    assert _state(fresh_id)[0].status == "running"
    assert _queued_messages() >= before + 1


def test_job_that_keeps_dying_fails_after_max_attempts(tenant):
    stale = utcnow() - timedelta(seconds=get_settings().heartbeat_timeout + 30)
    job_id = _job(tenant[0], status="running", attempt=get_settings().max_attempts, worker_id="dead:1",
                  heartbeat_at=stale)
    run_once()
    job, _ = _state(job_id)
    assert job.status == "failed" and job.error["code"] == "worker_lost"
    assert "giving up" in job.error["message"]


def test_queued_job_never_sent_is_sent(tenant):
    job_id = _job(tenant[0], status="queued", attempt=0)
    assert job_id in run_once()["sent"]
    assert _state(job_id)[0].enqueued_at is not None


def test_job_whose_message_the_broker_lost_is_sent_again(tenant, monkeypatch):
    monkeypatch.setattr(get_settings(), "resend_after", 0.0)
    job_id = _job(tenant[0], status="queued", attempt=0)
    assert job_id in run_once()["sent"]
    client = redis.Redis.from_url(REDIS_URL)
    assert job_id in b"".join(client.lrange(get_settings().queue_name, 0, -1)).decode()
    assert job_id not in run_once()["lost"]  # still held: nothing to do
    client.delete(get_settings().queue_name)  # what FLUSHALL or a restart without persistence does
    done = run_once()
    assert job_id in done["lost"] and job_id in done["sent"]
    assert job_id in b"".join(client.lrange(get_settings().queue_name, 0, -1)).decode()
    assert any("broker lost" in m for m in _state(job_id)[1])


def test_disk_full_is_reported_as_such():
    import errno

    from workers.tasks.run_job import describe_crash

    code, message = describe_crash(OSError(errno.ENOSPC, "No space left on device"))
    assert code == "disk_full" and "disk space" in message
    assert describe_crash(ValueError("boom"))[0] == "internal_error"


def test_orphaned_upload_bytes_are_swept(client, tenant, monkeypatch, data_dir):
    import os

    from tests.api.helpers import classification_rows, jsonl, upload

    tenant_id, key = tenant
    kept = upload(client, key, jsonl(classification_rows())).json()["id"]
    folder = data_dir / "files" / tenant_id
    orphan = folder / "file-orphanedbyakilledapi00"
    partial = folder / ".file-x.abc.partial"
    for path in (orphan, partial):
        path.write_bytes(b"{}\n")
        os.utime(path, (1, 1))
    os.utime(folder / kept, (1, 1))
    monkeypatch.setattr(get_settings(), "orphan_grace", 60.0)
    swept = run_once()["swept"]
    assert f"{tenant_id}/{orphan.name}" in swept and f"{tenant_id}/{partial.name}" in swept
    assert not orphan.exists() and not partial.exists() and (folder / kept).exists()
