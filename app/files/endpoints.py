"""/v1/files: OpenAI's file API (multipart upload, list, retrieve, delete, content)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionDep, TenantDep
from app.api.pagination import list_body, paginate
from app.core.errors import BadRequest
from app.files import service
from app.files.schemas import file_object
from app.fsio import iter_file
from app.idempotency import service as idempotency
from app.models import File

router = APIRouter(prefix="/v1/files", tags=["files"])


def _chunks(upload: UploadFile):
    while chunk := upload.file.read(1024 * 1024):
        yield chunk


@router.post("")
async def upload_file(
    request: Request, session: SessionDep, tenant: TenantDep, file: UploadFile | None = None,
    purpose: Annotated[str | None, Form()] = None,
) -> dict:
    if file is None:
        raise BadRequest("Send the file as multipart/form-data field 'file'.", param="file")
    if purpose is None:
        raise BadRequest("Missing form field 'purpose' (use 'fine-tune').", param="purpose")

    key = idempotency.check_key(request.headers.get(idempotency.HEADER))

    def store() -> dict:
        created = service.create_file(session, tenant.id, file.filename, purpose, _chunks(file))
        try:
            response = file_object(created)
            if key is not None:
                fingerprint = idempotency.fingerprint("files.create", purpose, created.filename, created.sha256)
                stored = idempotency.replay(session, tenant.id, key, fingerprint)
                if stored is not None:  # a replay: drop the second copy, answer with the first
                    session.rollback()
                    service.storage_path(created.storage_key).unlink(missing_ok=True)
                    return stored
                idempotency.remember(session, tenant.id, key, fingerprint, response)
            session.commit()
        except BaseException:
            session.rollback()
            service.storage_path(created.storage_key).unlink(missing_ok=True)
            raise
        return response

    return await run_in_threadpool(store)


@router.get("")
def list_files(session: SessionDep, tenant: TenantDep, purpose: str | None = None,
               after: str | None = None, limit: int = 100) -> dict:
    rows, has_more = paginate(session, service.list_files(tenant.id, purpose), File, after, limit)
    return list_body([file_object(f) for f in rows], has_more)


@router.get("/{file_id}")
def retrieve_file(file_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    return file_object(service.get_file(session, tenant.id, file_id))


@router.delete("/{file_id}")
def delete_file(file_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    path = service.delete_file(session, tenant.id, file_id)
    session.commit()
    path.unlink(missing_ok=True)
    return {"id": file_id, "object": "file", "deleted": True}


@router.get("/{file_id}/content")
def file_content(file_id: str, session: SessionDep, tenant: TenantDep) -> StreamingResponse:
    file = service.get_file(session, tenant.id, file_id)
    path = service.verified_path(file)
    return StreamingResponse(iter_file(path), media_type="application/octet-stream",
                             headers={"Content-Length": str(file.bytes), "X-Checksum-SHA256": file.sha256})
