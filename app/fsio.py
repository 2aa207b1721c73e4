"""File-system leaves: streamed sha256 of a file or a directory, fsync, and directory swaps.

A top-level leaf (not app.core) because both sides need it: the API's file store (app.core.storage)
and the pure-ML package (app.training), which may import nothing from app.core, app.models,
app.<domain> or workers. It therefore imports only the standard library, and never torch.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1024 * 1024


def iter_file(path: Path, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """A file's bytes in chunks, so neither hashing nor a download holds it whole in memory."""
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in iter_file(path):
        digest.update(chunk)
    return digest.hexdigest()


def directory_sha256(path: Path) -> str:
    """Content hash of a directory (a model): sorted relative paths and their file hashes, `.git` skipped,
    so the same files hash the same wherever they lie."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename into it, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file below `path`, then every directory deepest first: contents before the
    entries that name them, so a later rename never exposes empty files after a crash."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


def replace_dir(staging: Path, final: Path) -> None:
    """Move a complete `staging` dir to `final` (replacing any old one) and make the rename durable.

    Callers fsync `staging` first (fsync_tree) where its contents must survive a crash."""
    shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)
    fsync_dir(final.parent)


def replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` through a fsynced temporary sibling and a rename, so a reader (or a job
    resumed after a crash) sees the old file or the whole new one, never half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
