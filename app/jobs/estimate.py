"""`estimated_finish` of a running job, from its measured step time: the first and the latest training
metrics since the current run started ("Training … for N steps", which says N), extrapolated to N."""
from __future__ import annotations

from sqlalchemy import Connection, Row, select
from sqlalchemy.orm import Session

from app.models import Job, JobEvent
from app.models.job import JobStatus


def estimated_finish(session: Session | Connection, job: Job | Row) -> int | None:
    """Unix time the current training run should end; None unless running with two measured steps. `job`
    may be a row of app.jobs.service.VIEW_COLUMNS."""
    if job.status != JobStatus.running:
        return None
    events = select(JobEvent).where(JobEvent.job_id == job.id)
    start = session.execute(events.with_only_columns(JobEvent.seq, JobEvent.data["total_steps"].as_integer())
                            .where(JobEvent.data.has_key("total_steps"))
                            .order_by(JobEvent.seq.desc()).limit(1)).first()
    if start is None:
        return None
    measured = events.with_only_columns(JobEvent.created_at, JobEvent.data["step"].as_integer()).where(
        JobEvent.seq > start.seq, JobEvent.type == "metrics", JobEvent.data.has_key("train_loss"))
    first = session.execute(measured.order_by(JobEvent.seq).limit(1)).first()
    last = session.execute(measured.order_by(JobEvent.seq.desc()).limit(1)).first()
    if first is None or last is None or last[1] <= first[1]:
        return None
    per_step = (last[0] - first[0]).total_seconds() / (last[1] - first[1])
    remaining = max(0, start[1] - last[1])
    return int(last[0].timestamp() + remaining * per_step)
