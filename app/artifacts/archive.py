"""A job's artifacts as one ready folder to download: an uncompressed tar of `<job id>/<name>` entries
(weights barely compress), streamed file by file with its exact length known before the first byte."""
from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.fsio import iter_file

BLOCK = 512
END = b"\0" * (2 * BLOCK)  # two zero blocks close a tar archive


@dataclass(frozen=True)
class Entry:
    header: bytes  # the tar (PAX) header of one file
    path: Path
    size: int


def entry(name: str, path: Path, size: int, mtime: float) -> Entry:
    """One regular file, readable by everyone once unpacked, owned by whoever unpacks it."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return Entry(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), path, size)


def padding(size: int) -> int:
    return -size % BLOCK


def tar_length(entries: list[Entry]) -> int:
    return sum(len(e.header) + e.size + padding(e.size) for e in entries) + len(END)


def tar_stream(entries: list[Entry]) -> Iterator[bytes]:
    """The archive's bytes; each file is read in chunks, never whole."""
    for e in entries:
        yield e.header
        yield from iter_file(e.path)
        yield b"\0" * padding(e.size)
    yield END
