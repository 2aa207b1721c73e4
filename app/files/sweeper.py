"""Remove bytes that no row owns: uploads cut off by a dying API process, or deleted rows whose
unlink never happened. A row is never without its bytes (bytes are stored whole first).

The same pass covers the local store and a remote one (listing `files/` there), and this host's
spool of uploads checked before they went to a remote store."""
from __future__ import annotations

import time

from sqlalchemy import select

from app.core.config import get_settings
from app.core.object_store import cache_dir, get_store
from app.models import File


def sweep_orphan_files(session) -> list[str]:
    """Delete partial uploads and row-less files older than `orphan_grace` seconds; return their names
    (`<tenant>/<file>`)."""
    grace = get_settings().orphan_grace
    cutoff = time.time() - grace
    store = get_store()
    old = [info.key for info in store.list("files") if info.mtime < cutoff and info.key.count("/") == 2]
    names = {key: key.rsplit("/", 1)[1] for key in old}
    candidates = [name for name in names.values() if not name.startswith(".")]
    owned = set(session.scalars(select(File.id).where(File.id.in_(candidates)))) if candidates else set()
    removed = []
    for key, name in names.items():
        if name.startswith(".") or name not in owned:
            store.delete(key)
            removed.append(key.removeprefix("files/"))
    for prefix in ("files", "artifacts"):
        store.abort_stale_uploads(prefix, grace)
    spool = cache_dir() / "spool"
    for path in spool.iterdir() if spool.is_dir() else ():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
    return removed
