"""How far jobs have trained, for the dashboard: the latest measured step against the step count of the
latest training run ("Training … for N steps" carries `total_steps`; an adaptive job's phases each say
their own). The dashboard's script reads the same two facts from the live event stream."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from app.models import Job, JobEvent
from app.models.job import JobStatus


@dataclass(frozen=True)
class Progress:
    step: int = 0
    total_steps: int | None = None
    done: bool = False  # succeeded: complete whatever the counts say

    @property
    def fraction(self) -> float:
        if self.done:
            return 1.0
        if not self.total_steps:
            return 0.0
        return min(1.0, max(0.0, self.step / self.total_steps))

    @property
    def percent(self) -> int:
        return int(self.fraction * 100)


def jobs_progress(session: Session, jobs: Sequence[Job]) -> dict[str, Progress]:
    """Each job's Progress, in two queries whatever the number of jobs."""
    ids = [job.id for job in jobs]
    totals = dict(session.execute(_latest(ids, JobEvent.data["total_steps"].as_integer(),
                                          JobEvent.data.has_key("total_steps"))).all())
    steps = dict(session.execute(_latest(ids, JobEvent.data["step"].as_integer(), JobEvent.type == "metrics",
                                         JobEvent.data.has_key("train_loss"))).all())
    return {job.id: Progress(steps.get(job.id) or 0, totals.get(job.id), job.status == JobStatus.succeeded)
            for job in jobs}


def _latest(ids: list[str], value, *where) -> Select:
    """(job id, `value` of the job's latest event matching `where`) for each of `ids` that has one."""
    return (select(JobEvent.job_id, value).where(JobEvent.job_id.in_(ids), *where)
            .ext(distinct_on(JobEvent.job_id)).order_by(JobEvent.job_id, JobEvent.seq.desc()))
