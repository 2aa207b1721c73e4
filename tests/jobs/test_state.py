"""The job state machine (app.jobs.state) against real PostgreSQL rows: every (source, target) pair
is either allowed and performed or refused, and a compare-and-set that lost a race changes nothing."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update

from app.core.db import get_sessionmaker, session_scope
from app.core.errors import Conflict
from app.core.ids import new_id
from app.core.retry import with_db
from app.jobs import state
from app.models import Job, JobEvent
from app.models.job import FINAL_STATUSES, JobStatus
from tests.conftest import new_tenant

PAIRS = [(source, target) for source in JobStatus for target in JobStatus]


@pytest.fixture(scope="module")
def tenant_id(database) -> str:
    return new_tenant()[0]


def _insert(session, tenant_id: str, status: JobStatus) -> str:
    job = Job(id=new_id("ftjob-"), tenant_id=tenant_id, model="tiny-bert", training_file="file-x", seed=1,
              method={"type": "bitfit"}, status=status, attempt=0)
    session.add(job)
    session.flush()
    return job.id


def _status(session, job_id: str) -> str:
    return session.scalar(select(Job.status).where(Job.id == job_id).execution_options(populate_existing=True))


def test_the_table_names_every_status_and_final_ones_have_no_way_out():
    assert set(state.TRANSITIONS) == set(JobStatus)
    assert all(not state.TRANSITIONS[final] for final in FINAL_STATUSES)
    assert set(state.UNFINISHED) == set(JobStatus) - set(FINAL_STATUSES)
    reachable = {target for targets in state.TRANSITIONS.values() for target in targets}
    assert reachable == set(JobStatus) - {JobStatus.validating_files}  # only an insert creates that one


@pytest.mark.parametrize("source, target", PAIRS, ids=[f"{s}->{t}" for s, t in PAIRS])
def test_each_pair_is_performed_or_refused(session, tenant_id, source, target):
    job_id = _insert(session, tenant_id, source)
    if target in state.TRANSITIONS[source]:
        moved = state.move(session, job_id, source, target)
        assert moved is not None and moved.id == job_id
        assert _status(session, job_id) == target
    else:
        with pytest.raises(state.IllegalTransition, match=f"from {source} to {target}"):
            state.move(session, job_id, source, target)
        assert _status(session, job_id) == source


def test_a_refused_pair_among_allowed_ones_writes_nothing(session, tenant_id):
    job_id = _insert(session, tenant_id, JobStatus.running)
    with pytest.raises(state.IllegalTransition):  # succeeded -> paused is illegal, though running -> paused is not
        state.move(session, job_id, (JobStatus.pausing, JobStatus.succeeded), JobStatus.paused)
    assert _status(session, job_id) == JobStatus.running


def test_compare_and_set_loses_cleanly_when_the_row_changed(session, tenant_id):
    job_id = _insert(session, tenant_id, JobStatus.running)
    job = session.get(Job, job_id)
    session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.cancelled)  # another writer:
                    .execution_options(synchronize_session=False))  # `job` still says running
    assert state.move(session, job_id, JobStatus.running, JobStatus.succeeded, owner=None) is None
    assert _status(session, job_id) == JobStatus.cancelled
    with pytest.raises(Conflict, match="is cancelled; only queued or running"):
        state.request_pause(session, job)  # the request still believes the job is running
    assert _status(session, job_id) == JobStatus.cancelled


def test_a_pause_racing_a_claim_pauses_the_running_job(session, tenant_id):
    """The request loaded the job queued; a worker claimed it before the write: the pause follows it."""
    job_id = _insert(session, tenant_id, JobStatus.queued)
    job = session.get(Job, job_id)
    session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.running)
                    .execution_options(synchronize_session=False))  # `job` still says queued
    state.request_pause(session, job)
    assert _status(session, job_id) == JobStatus.pausing == job.status


def test_a_worker_that_lost_its_lease_changes_nothing(session, tenant_id):
    job_id = _insert(session, tenant_id, JobStatus.queued)
    assert state.claim(session, job_id, "w1:1").attempt == 1
    assert not state.succeed(session, job_id, "w2:1")  # not the owner
    state.finish(session, job_id, "w2:1", JobStatus.failed, "Job failed: boom", level="error")
    assert _status(session, job_id) == JobStatus.running
    assert state.succeed(session, job_id, "w1:1")
    assert _status(session, job_id) == JobStatus.succeeded


def _claim_committed(job_id: str, worker: str) -> str | None:
    job = with_db(lambda session: state.claim(session, job_id, worker))
    return job and job.worker_id


def test_two_workers_claiming_one_job_at_once_only_one_wins(tenant_id):
    with session_scope() as db:
        job_id = _insert(db, tenant_id, JobStatus.queued)
    first = get_sessionmaker()()
    try:
        with ThreadPoolExecutor(1) as pool:
            assert state.claim(first, job_id, "w1:1") is not None  # holds the row until it commits
            second = pool.submit(_claim_committed, job_id, "w2:1")
            time.sleep(0.5)
            assert not second.done()  # waiting on the first transaction's row lock
            first.commit()
            assert second.result(timeout=10) is None  # re-checked after the commit: no longer queued
        with session_scope() as db:
            job = db.get(Job, job_id)
            assert (job.status, job.worker_id, job.attempt) == (JobStatus.running, "w1:1", 1)
            started = db.scalars(select(JobEvent.message).where(JobEvent.job_id == job_id)).all()
            assert started == ["Fine-tuning job started (attempt 1, worker w1:1)"]
    finally:
        first.close()
        with session_scope() as db:  # leave nothing a later test's reaper or dispatcher would pick up
            state.move(db, job_id, state.UNFINISHED, JobStatus.cancelled)
