"""/v1/fine_tuning/jobs/{id}/artifacts: list with size and sha256, stream one by relative name, or all of
them as one ready folder (`artifacts.tar`)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from app.api.deps import SessionDep, TenantDep
from app.api.openapi import DOWNLOAD_RESPONSES
from app.artifacts import service
from app.artifacts.archive import entry, tar_length, tar_stream
from app.artifacts.download import stored_response
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


@router.get("/{job_id}/artifacts.tar", response_class=StreamingResponse, responses={200: {
    "description": "A tar of the folder `<job id>/` holding every artifact file (model card README.md, "
                   "config.json, manifest.json, the method's weights): `curl … | tar x`.",
    "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}},
    409: {"description": "The job has no artifacts yet: they appear when it succeeds."}})
def download_artifact_folder(job_id: str, session: SessionDep, tenant: TenantDep) -> StreamingResponse:
    """Every artifact of a job as one uncompressed tar, unpacking to the folder `<job id>/`."""
    job = get_job(session, tenant.id, job_id)
    entries = [entry(f"{job.id}/{row.name}", key, row.bytes, row.created_at.timestamp())
               for row, key in service.artifact_files(session, job)]
    return StreamingResponse(tar_stream(entries), media_type="application/x-tar", headers={
        "Content-Length": str(tar_length(entries)),
        "Content-Disposition": f'attachment; filename="{job.id}.tar"'})


@router.get("/{job_id}/artifacts/{name:path}", response_class=FileResponse, responses=DOWNLOAD_RESPONSES)
def download_artifact(job_id: str, name: str, session: SessionDep, tenant: TenantDep,
                      request: Request = None) -> Response:  # type: ignore[assignment] - the dashboard passes none
    """One artifact file; honours `Range` (206), so a broken download resumes where it stopped."""
    job = get_job(session, tenant.id, job_id)
    artifact, key = service.get_artifact(session, job, name)
    return stored_response(request, key, artifact.bytes, artifact.sha256, name.rsplit("/", 1)[-1])
