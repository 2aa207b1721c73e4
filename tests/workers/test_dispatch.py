"""Fair admission: one tenant's backlog cannot starve another's single job."""
from __future__ import annotations

import pytest
import redis
from sqlalchemy import update

from app.core.config import get_settings
from app.core.db import session_scope
from app.jobs.dispatch import admit
from app.models import Job
from tests.conftest import REDIS_URL, new_tenant
from tests.workers.test_maintenance import _job


@pytest.fixture(autouse=True)
def _isolated(quiet_queue):
    """Only this test's jobs are queued, and the test queue starts empty."""


def _start(job_ids: list[str]) -> None:
    """What a worker does: take the messages off the queue and claim the jobs."""
    redis.Redis.from_url(REDIS_URL).delete(get_settings().queue_name)
    with session_scope() as db:
        db.execute(update(Job).where(Job.id.in_(job_ids)).values(status="running"))


def test_a_big_backlog_does_not_delay_another_tenants_job_by_more_than_one_turn(monkeypatch):
    monkeypatch.setattr(get_settings(), "broker_depth", 1)
    busy, _ = new_tenant()
    quiet, _ = new_tenant()
    backlog = [_job(busy, status="queued") for _ in range(30)]
    single = _job(quiet, status="queued")
    first = admit()
    assert first == [backlog[0]]  # oldest job of the least-active tenants
    assert admit() == []  # the broker holds broker_depth messages already
    _start(first)
    assert admit() == [single]  # busy now runs one job, quiet runs none: quiet goes next
    _start([single])
    assert admit() == [backlog[1]]


def test_per_tenant_cap_on_active_jobs(monkeypatch):
    monkeypatch.setattr(get_settings(), "broker_depth", 5)
    monkeypatch.setattr(get_settings(), "max_running_per_tenant", 2)
    tenant, _ = new_tenant()
    jobs = [_job(tenant, status="queued") for _ in range(4)]
    assert admit() == jobs[:2]
    _start(jobs[:2])
    assert admit() == []
    with session_scope() as db:
        db.execute(update(Job).where(Job.id == jobs[0]).values(status="succeeded"))
    assert admit() == [jobs[2]]
