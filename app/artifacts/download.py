"""A stored object as an HTTP download: from the local store a FileResponse (as before); from a remote
store streamed chunk by chunk through the API, with `Range` honoured the same way (206 for one range,
416 past the end), so a broken download of a large artifact resumes where it stopped."""
from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from app.core.object_store import get_store

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """[start, end) asked for by a single-range `Range` header; None: send it all (no header, several
    ranges or one we do not parse, which RFC 9110 lets a server ignore); "unsatisfiable": a 416."""
    match = _RANGE.match((header or "").replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        return (max(0, size - int(last)), size) if int(last) > 0 else "unsatisfiable"
    start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size:
        return "unsatisfiable"
    return None if last and int(last) < start else (start, end)


def disposition(filename: str) -> str:
    quoted = quote(filename)
    return f"attachment; filename*=utf-8''{quoted}" if quoted != filename else f'attachment; filename="{filename}"'


def stored_response(request: Request | None, key: str, size: int, sha256: str, filename: str) -> Response:
    """The object at `key` (`size` bytes, checksum `sha256`) as a download named `filename`."""
    store = get_store()
    headers = {"X-Checksum-SHA256": sha256}
    if not store.remote:
        return FileResponse(store.path(key), media_type="application/octet-stream", filename=filename,
                            headers=headers)
    headers |= {"Accept-Ranges": "bytes", "Content-Disposition": disposition(filename), "ETag": f'"{sha256}"'}
    asked = request.headers if request is not None else {}
    wanted = byte_range(asked.get("range"), size) if asked.get("if-range") in (None, headers["ETag"]) else None
    if wanted == "unsatisfiable":
        return Response(status_code=416, headers=headers | {"Content-Range": f"bytes */{size}"})
    start, end = wanted or (0, size)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(store.iter_range(key, start, end), status_code=206 if wanted else 200,
                             media_type="application/octet-stream",
                             headers=headers | {"Content-Length": str(end - start)})
