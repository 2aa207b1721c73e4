from __future__ import annotations

from typing import Any

from app.models import File

PURPOSES = ("fine-tune",)


def file_object(file: File) -> dict[str, Any]:
    """OpenAI's File object."""
    return {
        "id": file.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": int(file.created_at.timestamp()),
        "filename": file.filename,
        "purpose": file.purpose,
        "status": file.status,
        "status_details": None,
        "expires_at": None,
        "sha256": file.sha256,
    }
