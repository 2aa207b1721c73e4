"""/v1/fine_tuning/jobs/{id}/export: merged full weights of a finished job, produced on request."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from app.api.deps import SessionDep, TenantDep
from app.core.queue import enqueue_export
from app.exports import service
from app.models import ExportStatus

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["exports"])
log = logging.getLogger(__name__)


@router.post("/{job_id}/export", status_code=202, responses={
    200: {"description": "The export already succeeded; its merged files are listed."}})
def create_export(job_id: str, session: SessionDep, tenant: TenantDep, response: Response) -> dict:
    """Idempotent: every request returns the job's one export (202 while it is queued or running,
    200 once it succeeded); a failed or abandoned one is queued again."""
    export, send = service.request_export(session, tenant.id, job_id)
    session.commit()
    if send:
        try:
            enqueue_export(export.id)
        except Exception as exc:  # broker down: the export stays queued, unsent; the maintenance pass sends it
            log.warning("export %s not sent to the broker: %s", export.id, exc)
            service.mark_unsent(session, export.id)
            session.commit()
    if export.status == ExportStatus.succeeded:
        response.status_code = 200
    return service.export_object(session, export)


@router.get("/{job_id}/export")
def retrieve_export(job_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    """The export's status; once succeeded, its `merged/…` files (GET .../artifacts/{name} serves them)."""
    return service.export_object(session, service.get_export(session, tenant.id, job_id))
