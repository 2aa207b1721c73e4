"""/v1/files: OpenAI's file API (multipart upload, list, retrieve, delete, content)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from app.api.deps import SessionDep, TenantDep
from app.api.openapi import DOWNLOAD_RESPONSES
from app.api.pagination import Limit, Order, list_body, paginate
from app.artifacts.download import stored_response
from app.core.object_store import get_store
from app.core.errors import BadRequest
from app.files import service
from app.files.schemas import PURPOSES, UPLOAD_BODY, file_object
from app.idempotency import service as idempotency
from app.models import File

router = APIRouter(prefix="/v1/files", tags=["files"])


def _chunks(upload: UploadFile):
    while chunk := upload.file.read(1024 * 1024):
        yield chunk


def _upload_fields(form: FormData) -> tuple[UploadFile, str]:
    """The multipart form's `file` part and `purpose` field, each refused with a message saying what to send."""
    file, purpose = form.get("file"), form.get("purpose")
    if not isinstance(file, UploadFile):
        hint = " as a file part (with a filename), not a text field" if file is not None else ""
        raise BadRequest(f"Send the file as multipart/form-data field 'file'{hint}.", param="file")
    if purpose is None:
        raise BadRequest(f"Missing form field 'purpose' (use {PURPOSES[0]!r}).", param="purpose")
    if not isinstance(purpose, str):
        raise BadRequest(f"Form field 'purpose' must be text such as {PURPOSES[0]!r}, not a file.", param="purpose")
    return file, purpose


@router.post("", openapi_extra={"requestBody": UPLOAD_BODY})
async def upload_file(request: Request, session: SessionDep, tenant: TenantDep) -> dict:
    """Upload a JSONL file (one JSON object per line); returns OpenAI's File object."""
    form = await request.form()
    try:
        file, purpose = _upload_fields(form)
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
                        service.discard_bytes(created.storage_key)
                        return stored
                    idempotency.remember(session, tenant.id, key, fingerprint, response)
                session.commit()
            except BaseException:
                session.rollback()
                service.discard_bytes(created.storage_key)
                raise
            return response

        return await run_in_threadpool(store)
    finally:
        await form.close()  # the spooled parts; FastAPI closes only forms it parsed itself


@router.get("")
def list_files(session: SessionDep, tenant: TenantDep, purpose: str | None = None, after: str | None = None,
               limit: Limit = 100, order: Annotated[Order, Query(description="By creation time.")] = "desc") -> dict:
    rows, has_more = paginate(session, service.list_files(tenant.id, purpose), File, after, limit, order)
    return list_body([file_object(f) for f in rows], has_more)


@router.get("/{file_id}")
def retrieve_file(file_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    return file_object(service.get_file(session, tenant.id, file_id))


@router.delete("/{file_id}")
def delete_file(file_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    key = service.delete_file(session, tenant.id, file_id)
    session.commit()
    service.discard_bytes(key)
    return {"id": file_id, "object": "file", "deleted": True}


@router.get("/{file_id}/content", response_class=FileResponse, responses=DOWNLOAD_RESPONSES)
def file_content(file_id: str, request: Request, session: SessionDep, tenant: TenantDep) -> Response:
    """The file's bytes; honours `Range` (206), so a broken download resumes."""
    file = service.get_file(session, tenant.id, file_id)
    if not get_store().remote:
        service.verified_path(file)  # a local file is re-hashed; a remote store checks its own objects
    return stored_response(request, service.object_key(file.storage_key), file.bytes, file.sha256, file.filename)
