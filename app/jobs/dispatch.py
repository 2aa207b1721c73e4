"""Fair admission of queued jobs to the broker.

Jobs are not sent when they are created: the dispatcher keeps at most `broker_depth` messages
waiting in the queue and fills each free slot from the tenant with the fewest active jobs (running,
pausing, or already sent), oldest job first. Tenant A's 500 queued jobs therefore delay tenant B's
one job by at most one job's turn. A tenant's `max_running_jobs` quota caps its active jobs.

Each resource class (app.jobs.resources: cpu, gpu, gpu-<type>, …) has its own queue and its own
`broker_depth`, so jobs waiting for a GPU never hold up CPU jobs, and the other way round.

It runs after every create/resume, after a worker claims or finishes a job, and on every
maintenance pass; a PostgreSQL advisory lock makes concurrent runs take turns.
"""
from __future__ import annotations

import logging

from sqlalchemy import func, or_, select, text
from sqlalchemy.dialects.postgresql import distinct_on

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.queue import enqueue_job, waiting_messages
from app.jobs.resources import queue_for
from app.jobs.state import HELD_BY_WORKER
from app.models import Job
from app.models.base import utcnow
from app.models.job import JobStatus
from app.tenants.limits import limits_for

log = logging.getLogger(__name__)
DISPATCH_LOCK = 0x6469_7370  # "disp"


def active_by_tenant(session) -> dict[str, int]:
    active = or_(Job.status.in_(HELD_BY_WORKER), (Job.status == JobStatus.queued) & Job.enqueued_at.is_not(None))
    return dict(session.execute(select(Job.tenant_id, func.count()).where(active).group_by(Job.tenant_id)).all())


def resource_class():
    """The job's resource class as SQL (jobs stored before classes existed: cpu)."""
    return func.coalesce(Job.method["resources"]["class"].astext, "cpu")


def unsent():
    return (Job.status == JobStatus.queued) & Job.enqueued_at.is_(None)


def oldest_unsent_per_tenant(session, exclude: set[str], of_class: str | None = None) -> list[Job]:
    query = select(Job).where(unsent()).ext(distinct_on(Job.tenant_id)).order_by(Job.tenant_id, Job.seq)
    if exclude:
        query = query.where(Job.id.not_in(exclude))
    if of_class is not None:
        query = query.where(resource_class() == of_class)
    return list(session.scalars(query))


def pick(session, free: int, of_class: str | None = None) -> list[Job]:
    """Up to `free` jobs (of one resource class, None: any), each from the least-active tenant (ties: the
    oldest job)."""
    active = active_by_tenant(session)
    caps: dict[str, int | None] = {}
    picked: list[Job] = []

    def under_cap(job: Job) -> bool:
        if job.tenant_id not in caps:
            caps[job.tenant_id] = limits_for(session, job.tenant_id).max_running_jobs
        cap = caps[job.tenant_id]
        return cap is None or active.get(job.tenant_id, 0) < cap

    for _ in range(free):
        heads = [job for job in oldest_unsent_per_tenant(session, {j.id for j in picked}, of_class) if under_cap(job)]
        if not heads:
            break
        job = min(heads, key=lambda j: (active.get(j.tenant_id, 0), j.seq))
        active[job.tenant_id] = active.get(job.tenant_id, 0) + 1
        picked.append(job)
    return picked


def admit() -> list[str]:
    """Send the next fair share of queued jobs; returns the ids sent. Never raises for a down broker."""
    sent: list[str] = []
    try:
        with session_scope() as session:
            session.execute(text("select pg_advisory_xact_lock(:k)"), {"k": DISPATCH_LOCK})
            classes = session.scalars(select(resource_class()).where(unsent()).distinct()).all()
            for of_class in sorted(classes):
                queue = queue_for(of_class)
                free = get_settings().broker_depth - waiting_messages(queue)
                for job in pick(session, free, of_class) if free > 0 else []:
                    enqueue_job(job.id, queue)
                    job.enqueued_at = utcnow()
                    sent.append(job.id)
    except Exception as exc:  # broker or database down: the next pass tries again, nothing is lost
        log.warning("dispatcher pass failed after sending %d job(s): %s", len(sent), exc)
    return sent
