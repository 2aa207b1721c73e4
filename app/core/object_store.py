"""Where uploaded files, job artifacts and base models live: the local data directory (default) or any
fsspec URL in `TUNEFORGE_ARTIFACT_URL` (`s3://bucket/prefix` on AWS, MinIO or another S3-compatible
store; credentials and endpoint from the standard `AWS_*` variables, other options as `FSSPEC_S3_*`).

Keys are the same relative paths in both: `files/<tenant>/<file id>`, `artifacts/<tenant>/<job>/<name>`,
`base_models/<sha256>/<name>`; the local store's root is the data directory, so a local deployment keeps
the layout it always had. Nothing half-written is ever visible: the database row, written last, is what
lists a file or an artifact; a local write goes through a temporary sibling and a rename, and an object
store's write is all-or-nothing by itself (a multipart upload appears only once completed).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.core.config import get_settings
from app.core.errors import AppError, shown
from app.fsio import CHUNK, fsync_dir, iter_file

# Object stores whose writes appear whole on close or not at all: no temporary key needed.
ATOMIC_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "az"})
PART_BYTES = 8 * 1024 * 1024  # multipart upload part size (S3 allows 5 MiB and up)
MARKER = ".tuneforge-complete.json"  # a tree's file list, written last: the upload is whole


class StoreError(AppError):
    """The object store refused or could not be reached: a 503 naming the store, not a 500."""

    status_code = 503
    type = "server_error"
    code = "storage_unavailable"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float


class ObjectStore:
    """A directory or a bucket prefix, addressed by relative keys; `remote` says which."""

    def __init__(self, url: str, fs: Any, root: str, remote: bool):
        self.url, self.fs, self.root, self.remote = url, fs, root.rstrip("/"), remote
        self.atomic = remote and bool(set(_protocols(fs)) & ATOMIC_PROTOCOLS)
        self._uploads_seen: dict[str, dict[str, float]] = {}  # prefix -> upload id -> first seen

    def full(self, key: str) -> str:
        return f"{self.root}/{key}"

    def path(self, key: str) -> Path:
        """The local file of `key` (local store only)."""
        if self.remote:
            raise ValueError(f"{self.url} is not a local directory")
        return Path(self.root) / key

    def put_file(self, source: Path, key: str) -> None:
        """Upload a complete local file to `key`, whole or not at all."""
        if not self.remote:
            dest = self.path(key)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, dest)
                fsync_dir(dest.parent)
            finally:
                tmp.unlink(missing_ok=True)
            return
        self.put_chunks(key, iter_file(source))

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> None:
        """Stream chunks to `key` of a remote store, whole or not at all: straight to the key where the
        store's writes are atomic, else to a temporary sibling key renamed once complete."""
        target = self.full(key) if self.atomic else self.full(_partial(key))
        try:
            out = self.fs.open(target, "wb", block_size=PART_BYTES)
            try:
                for chunk in chunks:
                    out.write(chunk)
            except BaseException:
                if self.atomic:  # closing would complete the upload: abort it instead
                    out.discard()
                    out.closed = True
                else:
                    out.close()
                    self.fs.rm_file(target)
                raise
            out.close()
            if not self.atomic:
                self.fs.mv(target, self.full(key))
        except AppError:
            raise
        except Exception as exc:
            raise self._error(exc, f"upload {key}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        if not self.remote:
            from app.core.storage import write_atomic

            write_atomic(self.path(key), [data])
            return
        try:
            self.fs.pipe_file(self.full(key), data)
        except Exception as exc:
            raise self._error(exc, f"write {key}") from exc

    def read_bytes(self, key: str) -> bytes | None:
        """The object's bytes, None if there is none."""
        try:
            return self.fs.cat_file(self.full(key))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._error(exc, f"read {key}") from exc

    def size(self, key: str) -> int | None:
        """The object's size, None if there is none."""
        try:
            info = self.fs.info(self.full(key))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._error(exc, f"read {key}") from exc
        return int(info["size"]) if info.get("type") == "file" else None

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of the object, in chunks: a download never holds a file whole."""
        try:
            with self.fs.open(self.full(key), "rb") as f:
                f.seek(start)
                left = None if end is None else end - start
                while left is None or left > 0:
                    chunk = f.read(CHUNK if left is None else min(CHUNK, left))
                    if not chunk:
                        break
                    if left is not None:
                        left -= len(chunk)
                    yield chunk
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise self._error(exc, f"read {key}") from exc

    def download(self, key: str, dest: Path) -> str:
        """Copy the object to `dest` (temp file + rename, so a reader never sees half); its sha256."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for chunk in self.iter_range(key):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self.full(key))
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._error(exc, f"delete {key}") from exc

    def delete_prefix(self, prefix: str) -> None:
        """Every object under `prefix/` (best effort: what is left is swept or overwritten later)."""
        for info in self.list(prefix):
            self.delete(info.key)
        if not self.remote:
            shutil.rmtree(self.path(prefix), ignore_errors=True)

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object below `prefix/`, with its size and last-modified time."""
        try:
            found = self.fs.find(self.full(prefix), detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._error(exc, f"list {prefix}") from exc
        base = self.fs._strip_protocol(self.root).rstrip("/") + "/"
        return [ObjectInfo(name[len(base):] if name.startswith(base) else name, int(info.get("size") or 0),
                           _mtime(info)) for name, info in found.items() if info.get("type") == "file"]

    def children(self, prefix: str) -> list[str]:
        """The names directly below `prefix/` (objects and folders alike): one listing call, not a walk."""
        try:
            found = self.fs.ls(self.full(prefix), detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._error(exc, f"list {prefix}") from exc
        return sorted({str(name).rstrip("/").rsplit("/", 1)[-1] for name in found})

    def abort_stale_uploads(self, prefix: str, grace: float) -> int:
        """Abort S3 multipart uploads below `prefix/` that this process has seen unfinished for `grace`
        seconds: a process killed mid-upload leaves one behind, never visible but billed. Timed by this
        host's clock from when first seen, not by the store's `Initiated` (a skewed or fake clock there,
        as moto's, would abort uploads still in flight). Other stores keep no such leftovers."""
        lister = getattr(self.fs, "list_multipart_uploads", None)
        if not self.remote or lister is None:
            return 0
        bucket, _, root_key = self.root.partition("/")
        wanted, now, aborted = f"{root_key}/{prefix}/".lstrip("/"), time.monotonic(), 0
        try:
            pending = {u["UploadId"]: u["Key"] for u in lister(bucket) if u["Key"].startswith(wanted)}
            seen = self._uploads_seen.setdefault(prefix, {})
            for upload_id in set(seen) - set(pending):
                del seen[upload_id]
            for upload_id, key in pending.items():
                if now - seen.setdefault(upload_id, now) >= grace:
                    self.fs.abort_mpu(bucket, key, upload_id)
                    del seen[upload_id]
                    aborted += 1
        except Exception as exc:
            raise self._error(exc, f"list the uploads under {prefix}") from exc
        return aborted

    def _error(self, exc: Exception, what: str) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        return StoreError(f"The object store {self.url} could not {what} ({type(exc).__name__}: {exc}); check "
                          "TUNEFORGE_ARTIFACT_URL, its credentials and that the store is up, then retry.")

    def put_tree(self, prefix: str, root: Path, records: list[tuple[str, int, str]]) -> None:
        """Upload the files `records` (name, bytes, sha256) names below `root`, then the marker listing
        them: a reader trusts a tree only once its marker exists, so one cut off midway is never used."""
        self.delete(f"{prefix}/{MARKER}")  # an earlier attempt's marker must not vouch for these files
        for name, _, _ in records:
            self.put_file(root / name, f"{prefix}/{name}")
        self.put_bytes(f"{prefix}/{MARKER}", json.dumps({"files": records}).encode())

    def has_tree(self, prefix: str) -> bool:
        return self.size(f"{prefix}/{MARKER}") is not None

    def get_tree(self, prefix: str, dest: Path) -> bool:
        """Download a complete tree into `dest` through a temporary sibling; False if there is none. A file
        that does not match its checksum is refused; a concurrent fetch that finished first keeps its copy."""
        raw = self.read_bytes(f"{prefix}/{MARKER}")
        if raw is None:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.fetch")
        try:
            for name, _, sha256 in json.loads(raw)["files"]:
                target = (tmp / name).resolve()
                if not target.is_relative_to(tmp.resolve()) or self.download(f"{prefix}/{name}", target) != sha256:
                    raise AppError(f"{shown(name)} of {prefix} is damaged in the object store (checksum mismatch); "
                                   "upload it again.", status_code=500, code="object_corrupted")
            try:
                os.rename(tmp, dest)
            except OSError:  # another process fetched it first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True


def _partial(key: str) -> str:
    head, _, name = key.rpartition("/")
    return f"{head}/.{name}.{uuid.uuid4().hex}.partial" if head else f".{name}.{uuid.uuid4().hex}.partial"


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _mtime(info: dict) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value or 0)





def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for `url`: no listings cache, and an S3 endpoint from AWS_ENDPOINT_URL_S3 /
    AWS_ENDPOINT_URL (MinIO, moto), which not every s3fs release reads itself; everything else from the
    environment as fsspec reads it."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {"use_listings_cache": False}  # other hosts write too: a cached listing goes stale
    protocol = url.split("://", 1)[0]
    if endpoint and protocol in ("s3", "s3a"):
        options["endpoint_url"] = endpoint
    if protocol == "file":  # a shared mount: keys' folders appear as they are written, like a bucket's
        options["auto_mkdir"] = True
    return options


@lru_cache
def store_for(url: str | None, data_dir: Path) -> ObjectStore:
    """The store at `url` (a shared mount as `file:///mnt/…` too: copied like a bucket, renamed into place), or
    the local data directory when there is none."""
    import fsspec

    if not url:
        return ObjectStore(str(data_dir), fsspec.filesystem("file"), str(data_dir), remote=False)
    fs, root = fsspec.core.url_to_fs(url, **storage_options(url))
    return ObjectStore(url, fs, root, remote=True)


def get_store() -> ObjectStore:
    settings = get_settings()
    return store_for(settings.artifact_url, settings.data_dir)


def cache_dir() -> Path:
    """This host's copies of remote objects (base models by content hash, files, artifacts)."""
    return get_settings().data_dir / "cache"
