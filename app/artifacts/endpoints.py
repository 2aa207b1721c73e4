"""/v1/fine_tuning/jobs/{id}/artifacts: list with size and sha256, stream one by relative name."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from app.api.deps import SessionDep, TenantDep
from app.artifacts import service
from app.fsio import iter_file
from app.jobs.service import get_job

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["artifacts"])


@router.get("/{job_id}/artifacts")
def list_artifacts(job_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    job = get_job(session, tenant.id, job_id)
    return {
        "object": "list",
        "data": [{"object": "fine_tuning.job.artifact", "name": a.name, "bytes": a.bytes, "sha256": a.sha256}
                 for a in service.list_artifacts(session, job)],
        "has_more": False,
    }


@router.get("/{job_id}/artifacts/{name:path}")
def download_artifact(job_id: str, name: str, session: SessionDep, tenant: TenantDep) -> StreamingResponse:
    job = get_job(session, tenant.id, job_id)
    artifact, path = service.get_artifact(session, job, name)
    filename = name.rsplit("/", 1)[-1]
    return StreamingResponse(iter_file(path), media_type="application/octet-stream", headers={
        "Content-Length": str(artifact.bytes), "X-Checksum-SHA256": artifact.sha256,
        "Content-Disposition": f'attachment; filename="{filename}"',
    })
