"""Local file store with atomic writes: bytes become visible only once complete and checksummed."""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from app.core.errors import PayloadTooLarge
from app.fsio import fsync_dir


def write_atomic(dest: Path, chunks: Iterable[bytes], max_bytes: int | None = None) -> tuple[int, str]:
    """Stream `chunks` into `dest` via a temp file + rename; return (size, sha256).

    Raises PayloadTooLarge (and leaves nothing behind) once `max_bytes` is exceeded.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
    digest, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise PayloadTooLarge(
                        f"File is larger than the upload limit of {max_bytes} bytes.", param="file"
                    )
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return size, digest.hexdigest()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
