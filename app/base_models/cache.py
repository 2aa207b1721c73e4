"""This host's copies of base models fetched from the object store (`cache/base_models/<sha256>/`), kept under
TUNEFORGE_MODEL_CACHE_MAX_BYTES by evicting the least recently used models no process here is using.

In use means a shared `flock` on `cache/base_models/.locks/<sha256>`: held while a model is fetched, and for a
whole job inside `models_held` (the worker's run). Eviction takes the exclusive lock without waiting, so a
model being loaded or trained on is skipped, and a crashed process's locks vanish with it. Recency is the lock
file's mtime, touched at every use.
"""
from __future__ import annotations

import contextvars
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.core.object_store import cache_dir

LOCKS = ".locks"
log = logging.getLogger(__name__)
_held: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("models_held", default=None)


def cache_root() -> Path:
    return cache_dir() / "base_models"


def cached_model_dir(sha256: str) -> Path:
    return cache_root() / sha256


def _lock(sha256: str, mode: int) -> int | None:
    """An open descriptor holding `mode` on the model's lock file; None if a non-blocking lock is refused."""
    path = cache_root() / LOCKS / sha256
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def in_use(sha256: str) -> Iterator[None]:
    """The model is in use (never evicted) for the block, and inside `models_held` until that ends too."""
    fd = _lock(sha256, fcntl.LOCK_SH)
    os.utime(cache_root() / LOCKS / sha256)  # recency for the LRU order
    held = _held.get()
    if held is not None:
        held.append(_lock(sha256, fcntl.LOCK_SH))
    try:
        yield
    finally:
        os.close(fd)


@contextmanager
def models_held() -> Iterator[None]:
    """Every model this thread uses inside the block (a job's run) stays in use until it ends."""
    held: list[int] = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        for fd in held:
            os.close(fd)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def evict(max_bytes: int | None) -> list[str]:
    """Remove least recently used cached models not in use until the cache fits `max_bytes` (None: no bound);
    returns the evicted hashes. A model a host links from where it was registered costs nothing and stays."""
    root = cache_root()
    if max_bytes is None or not root.is_dir():
        return []
    entries = []
    for path in root.iterdir():
        if path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        lock = root / LOCKS / path.name
        entries.append((lock.stat().st_mtime if lock.exists() else path.stat().st_mtime, path, _size(path)))
    total, evicted = sum(size for _, _, size in entries), []
    for _, path, size in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        fd = _lock(path.name, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if fd is None:  # a job here is loading or training on it
            continue
        try:
            trash = path.with_name(f".{path.name}.{uuid.uuid4().hex}.evicted")
            os.rename(path, trash)  # gone from its name at once; the bytes after
            shutil.rmtree(trash, ignore_errors=True)
        finally:
            os.close(fd)
        total -= size
        evicted.append(path.name)
        log.info("base model cache: evicted %s (%d bytes) to stay under %d bytes", path.name, size, max_bytes)
    if total > max_bytes:
        log.warning("base model cache holds %d bytes, over TUNEFORGE_MODEL_CACHE_MAX_BYTES=%d: the rest is in use",
                    total, max_bytes)
    return evicted
