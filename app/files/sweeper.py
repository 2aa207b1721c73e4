"""Remove bytes that no row owns: uploads cut off by a dying API process, or deleted rows whose
unlink never happened. A row is never without its bytes (bytes are renamed into place first)."""
from __future__ import annotations

import time

from sqlalchemy import select

from app.core.config import get_settings
from app.models import File


def sweep_orphan_files(session) -> list[str]:
    """Delete partial uploads and row-less files older than `orphan_grace` seconds; return their names."""
    settings = get_settings()
    root = settings.files_dir
    if not root.is_dir():
        return []
    cutoff = time.time() - settings.orphan_grace
    old = [p for p in root.glob("*/*") if p.is_file() and p.stat().st_mtime < cutoff]
    candidates = [p for p in old if not p.name.startswith(".")]
    owned = set(session.scalars(select(File.id).where(File.id.in_([p.name for p in candidates])))) if candidates else set()
    removed = []
    for path in old:
        if path.name.startswith(".") or path.name not in owned:
            path.unlink(missing_ok=True)
            removed.append(f"{path.parent.name}/{path.name}")
    return removed
