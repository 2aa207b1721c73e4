from __future__ import annotations

from typing import Any

from app.models import File

CORPUS_PURPOSE = "corpus"  # unlabelled text: plain (one document per line) or JSONL {"text"}, maybe gzip
PURPOSES = ("fine-tune", CORPUS_PURPOSE)  # what a tenant may upload
RESULTS_PURPOSE = "fine-tune-results"  # files the service writes (a job's metrics CSV)
JSONL = "application/jsonl"

# POST /v1/files as the endpoint parses it (app.files.endpoints reads the form itself, to word its errors)
UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {"multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file", "purpose"],
            "properties": {
                "file": {"type": "string", "format": "binary", "contentMediaType": JSONL, "description": (
                    "A file part (with a filename). fine-tune: UTF-8 JSONL, one JSON object per line, e.g. "
                    '{"text": "great match", "label": "sport"}; blank lines are skipped. corpus: UTF-8 plain '
                    'text, one document per line, or JSONL {"text": ...}; either may be gzip-compressed.')},
                "purpose": {"type": "string", "enum": list(PURPOSES), "description": (
                    "'fine-tune' (training/validation data) or 'corpus' (unlabelled text for adaptive "
                    "pretraining and /v1/corpora).")},
            },
        },
        "encoding": {"file": {"contentType": JSONL}},
    }},
}


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
