"""The one owner of a job's status: every change of `jobs.status` happens here.

Each change is a compare-and-set UPDATE (`... WHERE status IN (sources)`), so the API, a worker and
the reaper racing on one job never overwrite each other: the loser changes nothing and is told so.
Before writing, the requested move is checked against TRANSITIONS; a move the table lacks is a bug
in the caller and raises IllegalTransition (API callers turn what a user may ask into Conflict).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.core.errors import StateConflict
from app.jobs.events import record_event
from app.leases import worker_lost_error
from app.models import Job
from app.models.base import utcnow
from app.models.job import JobStatus
from app.webhooks import outbox as webhooks

S = JobStatus
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.validating_files: frozenset({S.queued, S.paused, S.cancelled}),
    S.queued: frozenset({S.running, S.paused, S.cancelled}),  # claim, pause, cancel
    S.running: frozenset({S.pausing, S.queued, S.succeeded, S.failed, S.cancelled}),  # queued: reaper
    S.pausing: frozenset({S.paused, S.failed, S.cancelled}),  # paused: by the worker or the reaper
    S.paused: frozenset({S.queued, S.cancelled}),  # resume, cancel
    S.succeeded: frozenset(),
    S.failed: frozenset(),
    S.cancelled: frozenset(),
}
UNFINISHED = tuple(source for source, targets in TRANSITIONS.items() if targets)
HELD_BY_WORKER = (S.running, S.pausing)  # a worker owns the job (worker_id) and beats its heartbeat
PAUSE_TARGET = {S.running: S.pausing, S.queued: S.paused, S.validating_files: S.paused}
CONCURRENT = "Job {id} changed state concurrently; retrieve it and try again."


class IllegalTransition(ValueError):
    """A move TRANSITIONS does not allow, e.g. succeeded → running."""


def check(source: str, target: str) -> None:
    """Raise IllegalTransition unless TRANSITIONS allows `source` → `target`."""
    if JobStatus(target) not in TRANSITIONS[JobStatus(source)]:
        raise IllegalTransition(f"A job cannot go from {source} to {target}.")


def move(session: Session, job_id: str, sources: str | Iterable[str], target: JobStatus, *,
         owner: str | None = None, **values: Any) -> Job | None:
    """Set `target` (and `values`) if the job is still in one of `sources` (and held by worker
    `owner`, when given); the updated job, or None when another writer changed it first. A move to
    an ending writes the job's webhook deliveries (the outbox) in the same transaction."""
    sources = (sources,) if isinstance(sources, str) else tuple(sources)
    for source in sources:
        check(source, target)
    query = update(Job).where(Job.id == job_id, Job.status.in_(sources))
    if owner is not None:
        query = query.where(Job.worker_id == owner)
    # "fetch": only the row the UPDATE really matched is refreshed in the session, so a lost race
    # leaves the caller's loaded job as it was (the default "evaluate" would move it anyway)
    job = session.scalar(query.values(status=target, **values).returning(Job)
                         .execution_options(synchronize_session="fetch"))
    if job is not None and not TRANSITIONS[target]:  # an ending: its webhooks commit (or not) with it
        webhooks.job_ended(session, job)
    return job


# --- the API (a user's request; refusals are 409 Conflict) -------------------------------------

def _move_loaded(session: Session, job: Job, target: JobStatus, **values: Any) -> None:
    """Move a job the request has loaded, from the status it was loaded with."""
    if move(session, job.id, job.status, target, **values) is None:
        raise StateConflict(CONCURRENT.format(id=job.id), param="fine_tuning_job_id")
    session.flush()
    session.refresh(job)


def queue_validated(session: Session, job: Job) -> None:
    """validating_files → queued, once its files passed validation."""
    _move_loaded(session, job, S.queued)
    record_event(session, job.id, "Job queued")


def cancel(session: Session, job: Job) -> None:
    """Any unfinished job → cancelled at once; a worker running it sees that within a step and stops."""
    if move(session, job.id, UNFINISHED, S.cancelled, finished_at=utcnow()) is None:
        session.refresh(job)
        raise StateConflict(f"Job {job.id} is already {job.status}; only unfinished jobs can be cancelled.",
                            param="fine_tuning_job_id")
    record_event(session, job.id, "Job cancelled by user")
    session.flush()
    session.refresh(job)


def request_pause(session: Session, job: Job) -> None:
    """running → pausing (the worker checkpoints, then → paused); a waiting job → paused at once.
    A worker claiming the job between the load and the write moves it queued → running; the
    request then retries once from the new status instead of answering a spurious 409."""
    for _ in range(3):
        target = PAUSE_TARGET.get(JobStatus(job.status))
        if target is None:
            raise StateConflict(f"Job {job.id} is {job.status}; only queued or running jobs can be paused.",
                                param="fine_tuning_job_id")
        if move(session, job.id, job.status, target) is not None:
            session.flush()
            session.refresh(job)
            record_event(session, job.id, "Pause requested; the job will checkpoint and stop"
                         if target == S.pausing else "Job paused before it started")
            return
        session.refresh(job)
    raise StateConflict(CONCURRENT.format(id=job.id), param="fine_tuning_job_id")


def resume(session: Session, job: Job) -> None:
    """paused → queued; the next worker continues from the last complete checkpoint."""
    if job.status != S.paused:
        hint = " It is still saving its checkpoint; try again in a few seconds." if job.status == S.pausing else ""
        raise StateConflict(f"Job {job.id} is {job.status}; only paused jobs can be resumed.{hint}",
                            param="fine_tuning_job_id")
    _move_loaded(session, job, S.queued, enqueued_at=None, worker_id=None)
    record_event(session, job.id, "Job resumed; queued to continue from its last checkpoint")


# --- a worker (guarded by worker_id: a reaped job's old worker changes nothing) ---------------

def claim(session: Session, job_id: str, worker: str) -> Job | None:
    """queued → running for `worker`, as attempt n+1; None if another worker has it or it was not queued."""
    job = move(session, job_id, S.queued, S.running, worker_id=worker, heartbeat_at=utcnow(),
               attempt=Job.attempt + 1, started_at=utcnow())
    if job is not None:
        record_event(session, job.id, f"Fine-tuning job started (attempt {job.attempt}, worker {worker})")
    return job


def succeed(session: Session, job_id: str, worker: str, **values: Any) -> bool:
    """running → succeeded with the result columns; False if the job was cancelled (or reaped) meanwhile."""
    return move(session, job_id, S.running, S.succeeded, owner=worker, finished_at=utcnow(), **values) is not None


def finish(session: Session, job_id: str, worker: str, target: JobStatus, message: str,
           error: dict | None = None, level: str = "info") -> None:
    """The worker's own end of an attempt other than success: → paused (it was pausing), failed or
    cancelled. A cancel is recorded even when the API already set it, which is the usual case."""
    sources = [source for source in HELD_BY_WORKER if target in TRANSITIONS[source]]
    if not sources:
        raise IllegalTransition(f"A worker cannot end a job as {target}.")
    done = move(session, job_id, sources, target, owner=worker, error=error,
                finished_at=None if target == S.paused else utcnow())
    if done is not None or target == S.cancelled:
        record_event(session, job_id, message, level=level)


# --- the reaper (rows it holds FOR UPDATE, so the compare-and-set cannot lose) ----------------

def reap(session: Session, job: Job, silent: int, max_attempts: int) -> None:
    """A job whose worker stopped beating: paused if it was pausing, failed after `max_attempts`,
    otherwise queued again for the next attempt."""
    if job.status == S.pausing:  # it was stopping anyway: keep it paused at its last checkpoint
        move(session, job.id, S.pausing, S.paused, worker_id=None)
        record_event(session, job.id, f"Worker lost while pausing (no heartbeat for {silent}s); job paused "
                                      "at its last complete checkpoint", level="warn")
    elif job.attempt >= max_attempts:
        error = worker_lost_error("job", job.attempt, silent, max_attempts)
        move(session, job.id, S.running, S.failed, finished_at=utcnow(), error=error)
        record_event(session, job.id, error["message"], level="error")
    else:
        move(session, job.id, S.running, S.queued, worker_id=None, enqueued_at=None)
        record_event(session, job.id, f"Worker lost (no heartbeat for {silent}s); re-queued for attempt "
                                      f"{job.attempt + 1} of {max_attempts}", level="warn")
