"""A job's checkpoints in the shared object store, so a worker on another host resumes it when this host is lost.

Layout under `checkpoints/<job>/`:
  blobs/<sha256>             one file's bytes, by content: a checkpoint kept over several snapshots (or an
                             unchanged `best/`) is uploaded once
  snapshots/<seq:08d>.json   the job's whole checkpoint directory at one moment (every file's relative path,
                             bytes and sha256; the global step), written after all its blobs: its completion
                             marker. An upload cut off before it is never used.
The newest KEEP snapshots stay (as the newest checkpoints stay on disk); older ones and every blob no kept
snapshot names are deleted. The job's lease keeps one writer per job at a time.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.core.object_store import ObjectStore
from app.fsio import replace_dir, sha256_file

PREFIX = "checkpoints"
KEEP = 2
log = logging.getLogger(__name__)
STORED = ".tuneforge-stored.json"  # in the local dir: the snapshot it holds (hidden: never uploaded itself)
Record = tuple[str, int, str]  # relative path, bytes, sha256


@dataclass(frozen=True)
class Snapshot:
    seq: int
    step: int
    files: list[Record]


def job_prefix(job_id: str) -> str:
    return f"{PREFIX}/{job_id}"


class Damaged(Exception):
    """A snapshot names a blob that is missing or does not match its checksum."""


def visible_files(root: Path) -> list[Path]:
    """Files below `root` (relative) outside hidden paths: temporary `.tmp` dirs, this module's marker."""
    names = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return sorted(n for n in names if not any(part.startswith(".") for part in n.parts))


def local_files(root: Path, hashes: dict[tuple[int, ...], str]) -> list[Record]:
    """`visible_files` with their sizes and sha256; `hashes` caches digests by inode, size and mtime, so a
    checkpoint kept over several snapshots (hard-linked each time) is read once."""
    records = []
    for name in visible_files(root):
        stat = (root / name).stat()
        key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if key not in hashes:
            hashes[key] = sha256_file(root / name)
        records.append((name.as_posix(), stat.st_size, hashes[key]))
    return records


def upload(store: ObjectStore, job_id: str, snapshot: Snapshot, root: Path, known: set[str]) -> None:
    """The blobs the store lacks, then the snapshot's manifest, then pruning; `known`: blobs stored already."""
    prefix = job_prefix(job_id)
    for name, _, sha256 in snapshot.files:
        if sha256 not in known and store.size(f"{prefix}/blobs/{sha256}") is None:
            store.put_file(root / name, f"{prefix}/blobs/{sha256}")
        known.add(sha256)
    manifest = {"seq": snapshot.seq, "step": snapshot.step, "files": snapshot.files}
    store.put_bytes(f"{prefix}/snapshots/{snapshot.seq:08d}.json", json.dumps(manifest).encode())
    prune(store, job_id, known)


def snapshot_keys(store: ObjectStore, job_id: str) -> list[str]:
    """Manifest keys, newest first."""
    keys = [o.key for o in store.list(f"{job_prefix(job_id)}/snapshots") if o.key.endswith(".json")]
    return sorted(keys, reverse=True)


def read_snapshot(store: ObjectStore, key: str) -> Snapshot | None:
    raw = store.read_bytes(key)
    if raw is None:
        return None
    data = json.loads(raw)
    return Snapshot(int(data["seq"]), int(data["step"]), [tuple(r) for r in data["files"]])


def prune(store: ObjectStore, job_id: str, known: set[str]) -> None:
    """Keep the newest KEEP snapshots and the blobs they name; the rest (an interrupted upload's too) goes."""
    keys = snapshot_keys(store, job_id)
    wanted = {sha for key in keys[:KEEP] if (s := read_snapshot(store, key)) for _, _, sha in s.files}
    for key in keys[KEEP:]:
        store.delete(key)
    for blob in store.list(f"{job_prefix(job_id)}/blobs"):
        sha256 = blob.key.rsplit("/", 1)[-1]
        if sha256 not in wanted:
            store.delete(blob.key)
            known.discard(sha256)


def local_seq(root: Path) -> int:
    """The snapshot the local dir holds (0: none known)."""
    try:
        return int(json.loads((root / STORED).read_text())["seq"])
    except (OSError, ValueError, KeyError):
        return 0


def mark_local(root: Path, seq: int, step: int) -> None:
    (root / STORED).write_text(json.dumps({"seq": seq, "step": step}))


def restore_newer(store: ObjectStore, job_id: str, root: Path) -> Snapshot | None:
    """Replace `root` with the newest complete snapshot when the store's is newer than the one `root` holds
    (a dir that never uploaded holds none); a snapshot with a missing or damaged blob is skipped for the one
    before it. None when the local dir is as new."""
    have = local_seq(root)
    for key in snapshot_keys(store, job_id):
        snapshot = read_snapshot(store, key)
        if snapshot is None or snapshot.seq <= have:
            return None
        tmp = root.with_name(f".{root.name}.{uuid.uuid4().hex}.restore")
        try:
            for name, _, sha256 in snapshot.files:
                target = (tmp / name).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise Damaged(f"{key} names a file outside the checkpoint dir: {name}")
                try:
                    if store.download(f"{job_prefix(job_id)}/blobs/{sha256}", target) != sha256:
                        raise Damaged(f"{key}: {name} does not match its checksum")
                except FileNotFoundError:
                    raise Damaged(f"{key}: {name} is missing") from None
            tmp.mkdir(parents=True, exist_ok=True)
            mark_local(tmp, snapshot.seq, snapshot.step)
            replace_dir(tmp, root)
            return snapshot
        except Damaged as exc:
            log.warning("job %s: snapshot skipped, trying the one before: %s", job_id, exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None


def delete(store: ObjectStore, job_id: str) -> None:
    """Every stored checkpoint of the job (it succeeded or was cancelled: nothing resumes it)."""
    store.delete_prefix(job_prefix(job_id))


def link_tree(root: Path, dest: Path) -> None:
    """Hard-link the visible files below `root` into `dest` (a copy where links fail): the uploader reads a
    fixed set while training goes on replacing and pruning checkpoints (renamed into place, never rewritten)."""
    for name in visible_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(root / name, target)
        except OSError:
            shutil.copy2(root / name, target)
