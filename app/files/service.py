"""Uploaded files: stored atomically, format-checked before a row exists, checksummed on read."""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import AppError, BadRequest, NotFound, shown
from app.core.ids import new_id
from app.core.storage import write_atomic
from app.core.text import storable
from app.files.schemas import CORPUS_PURPOSE, PURPOSES
from app.fsio import sha256_file
from app.models import File
from app.tenants import limits
from app.training.corpus_text import count_documents
from app.training.data import DatasetError, iter_jsonl

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_filename(name: str | None) -> str:
    """Keep a display name only: no directories, no control characters, bounded length."""
    base = (name or "upload.jsonl").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip(" .") or "upload.jsonl"
    return cleaned[:200]


def storage_path(storage_key: str) -> Path:
    return get_settings().files_dir / storage_key


def create_file(session: Session, tenant_id: str, filename: str | None, purpose: str, chunks: Iterable[bytes]) -> File:
    """Write the bytes (streamed), check them by streaming them back (JSONL, or a corpus), then add the row
    (the caller commits)."""
    if purpose not in PURPOSES:
        raise BadRequest(f"purpose must be one of {list(PURPOSES)}, got {purpose!r}.", param="purpose")
    file_id = new_id("file-")
    key = f"{tenant_id}/{file_id}"
    path = storage_path(key)
    size, digest = write_atomic(path, chunks, limits.limits_for(session, tenant_id).max_upload_bytes)
    try:
        limits.check_storage(session, tenant_id, size)
        (check_corpus if purpose == CORPUS_PURPOSE else check_jsonl)(path, size)
        file = File(id=file_id, tenant_id=tenant_id, filename=safe_filename(filename), purpose=purpose,
                    bytes=size, sha256=digest, storage_key=key)
        session.add(file)
        session.flush()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return file


def check_jsonl(path: Path, size: int) -> None:
    if size == 0:
        raise BadRequest("The uploaded file is empty; send one JSON object per line.", param="file")
    rows = 0
    try:
        for _ in iter_jsonl(path):
            rows += 1
    except DatasetError as exc:
        raise BadRequest(f"The uploaded file is not valid JSONL: {exc}", param="file", code="invalid_file") from exc
    if rows == 0:
        raise BadRequest("The uploaded file has no JSON lines, only blank ones.", param="file", code="invalid_file")


def check_corpus(path: Path, size: int) -> None:
    """A corpus: plain text or JSONL {"text"}, maybe gzip, read line by line (never whole)."""
    if size == 0:
        raise BadRequest("The uploaded corpus is empty; send one document per line (plain text or JSONL "
                         '{"text": ...}, gzip accepted).', param="file")
    try:
        count_documents(path)
    except DatasetError as exc:
        raise BadRequest(f"The uploaded corpus is not usable: {exc}", param="file", code="invalid_file") from exc


def get_file(session: Session, tenant_id: str, file_id: str, param: str | None = None) -> File:
    """A tenant's file; another tenant's id is indistinguishable from a missing one."""
    file = session.scalar(select(File).where(File.id == file_id, File.tenant_id == tenant_id)) \
        if storable(file_id) else None
    if file is None:
        raise NotFound(f"No such file: {shown(file_id)}.", param=param)
    return file


def verified_path(file: File) -> Path:
    """The file's bytes on disk, refused if they no longer match the recorded checksum."""
    path = storage_path(file.storage_key)
    if not path.exists() or path.stat().st_size != file.bytes or sha256_file(path) != file.sha256:
        raise AppError(f"File {file.id} is damaged in storage (checksum mismatch); upload it again.",
                       status_code=500, code="file_corrupted")
    return path


def list_files(tenant_id: str, purpose: str | None):
    query = select(File).where(File.tenant_id == tenant_id)
    if purpose:
        query = query.where(File.purpose == purpose)
    return query


def delete_file(session: Session, tenant_id: str, file_id: str) -> Path:
    """Delete the row; returns the bytes' path for the caller to unlink once the commit succeeded."""
    file = get_file(session, tenant_id, file_id)
    session.delete(file)
    session.flush()
    return storage_path(file.storage_key)
