"""A job's artifacts onto disk, trusted only once every file's sha256 matches what the server recorded.

The `artifacts.tar` stream is unpacked as it arrives (no second copy on disk) into a hidden staging
folder beside the destination, hashing each file while writing it; only a download whose every file
matches the job's artifact list (and the `files` of its manifest.json) is renamed into place, so a
corrupted or truncated one leaves nothing behind that looks usable.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from app.client.client import TuneforgeClient
from app.client.errors import ClientError
from app.client.types import Artifact

MANIFEST = "manifest.json"


class ChunkReader:
    """A read()-able view of an iterator of byte chunks, reporting each chunk to `progress`, so tarfile
    can unpack a stream without it ever being stored whole."""

    def __init__(self, chunks: Iterator[bytes], progress: Callable[[int], None]):
        self._chunks, self._progress, self._buffer = chunks, progress, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._progress(len(chunk))
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def relative_name(member: tarfile.TarInfo, job_id: str) -> str:
    """The artifact name of a tar entry `<job id>/<name>`; refused if it is not a plain file inside."""
    parts = PurePosixPath(member.name).parts
    if not member.isfile() or len(parts) < 2 or parts[0] != job_id or ".." in parts or member.name.startswith("/"):
        raise ClientError(f"the artifacts.tar of {job_id} holds an unexpected entry {member.name!r}; nothing was kept")
    return "/".join(parts[1:])


def unpack(stream: ChunkReader, job_id: str, staging: Path) -> dict[str, tuple[int, str]]:
    """Write every file of the tar stream under `staging`; {name: (bytes, sha256)} of what was written."""
    written: dict[str, tuple[int, str]] = {}
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            name = relative_name(member, job_id)
            source = archive.extractfile(member)
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest, size = hashlib.sha256(), 0
            with open(target, "wb") as out:
                while chunk := source.read(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            written[name] = (size, digest.hexdigest())
    return written


def mismatches(listed: list[Artifact], written: dict[str, tuple[int, str]], staging: Path) -> list[str]:
    """What disagrees between the download and the server's list (and the downloaded manifest's files)."""
    problems = [f"{a.name}: missing from the download" for a in listed if a.name not in written]
    problems += [f"{a.name}: sha256 {written[a.name][1][:12]}… but the job lists {a.sha256[:12]}…"
                 for a in listed if a.name in written and written[a.name] != (a.bytes, a.sha256)]
    problems += [f"{name}: not in the job's artifact list" for name in written.keys() - {a.name for a in listed}]
    if not problems and MANIFEST in written:
        files = json.loads((staging / MANIFEST).read_text()).get("files", {})
        problems += [f"{name}: differs from {MANIFEST}" for name, entry in files.items()
                     if written.get(name) != (entry.get("bytes"), entry.get("sha256"))]
    return problems


def download_artifacts(client: TuneforgeClient, job_id: str, out_dir: Path, progress: Callable[[int], None],
                       on_length: Callable[[int | None], None] = lambda _: None, force: bool = False) -> Path:
    """Download, verify and place the job's artifact folder at `out_dir/<job id>`; its path.
    ClientError (and nothing left on disk) if any file fails its checksum."""
    final = out_dir / job_id
    if final.exists() and not force:
        raise ClientError(f"{final} already exists; pass --force to replace it")
    listed = client.list_artifacts(job_id)
    staging = out_dir / f".{job_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with client.artifacts_tar(job_id) as (length, chunks):
            on_length(length)
            try:
                written = unpack(ChunkReader(chunks, progress), job_id, staging)
            except tarfile.TarError as exc:  # cut short or garbled on the way
                raise ClientError(f"the artifacts.tar of {job_id} arrived damaged ({exc}); nothing kept") from exc
        if problems := mismatches(listed, written, staging):
            raise ClientError(f"download of {job_id} failed verification, nothing kept: {'; '.join(problems)}")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
