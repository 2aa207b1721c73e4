"""What the dashboard's pages show, read with the API's own services (already scoped to the tenant) and
shaped for the templates; the templates escape every value, so nothing here builds HTML."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from app.api.pagination import paginate
from app.artifacts.service import list_artifacts
from app.jobs import service
from app.jobs.events import wire_level
from app.jobs.progress import Progress, jobs_progress
from app.jobs.results import metrics_events, metrics_rows
from app.models import Job, JobEvent
from app.models.job import FINAL_STATUSES

PAGE_SIZE = 20
EVENTS_SHOWN = 20  # the newest; a live page adds the ones that follow


@dataclass(frozen=True)
class JobRow:
    id: str
    suffix: str | None
    status: str
    method: str
    model: str
    created: str
    progress: Progress

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def job_row(job: Job, progress: Progress) -> JobRow:
    return JobRow(job.id, job.suffix, job.status, (job.method or {}).get("type", ""), job.model,
                  when(job.created_at), progress)


def jobs_page(session: Session, tenant_id: str, after: str | None) -> dict[str, Any]:
    """A page of the tenant's jobs, newest first, and the cursor of the next page."""
    jobs, has_more = paginate(session, service.list_jobs(tenant_id), Job, after, PAGE_SIZE)
    progress = jobs_progress(session, jobs)
    return {"jobs": [job_row(job, progress[job.id]) for job in jobs],
            "next_after": jobs[-1].id if has_more else None}


def job_page(session: Session, tenant_id: str, job_id: str) -> dict[str, Any]:
    """One job: its facts, progress, newest events, whether it has curves yet, and its artifacts."""
    job = service.get_job(session, tenant_id, job_id)
    row = job_row(job, jobs_progress(session, [job])[job.id])
    events, _ = paginate(session, service.events_query(job), JobEvent, None, EVENTS_SHOWN)
    return {
        "job": row,
        "fine_tuned_model": job.fine_tuned_model,
        "finished": when(job.finished_at),
        "metadata": sorted((job.metadata_ or {}).items()),
        "error": (job.error or {}).get("message"),
        "metrics": sorted((job.result_metrics or {}).items()),
        "events": [{"id": e.id, "created": when(e.created_at), "level": wire_level(e.level), "message": e.message}
                   for e in events],
        "has_curves": bool(metrics_rows(metrics_events(session, job.id))),
        "artifacts": [{"name": a.name, "bytes": a.bytes, "sha256": a.sha256,
                       "href": f"/ui/jobs/{quote(job.id, safe='')}/artifacts/{quote(a.name)}"}
                      for a in list_artifacts(session, job)],
    }
