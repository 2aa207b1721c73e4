"""A job's artifacts as one ready folder to download: an uncompressed tar of `<job id>/<name>` entries
(weights barely compress), streamed file by file from the object store with its exact length known
before the first byte."""
from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from app.core.object_store import get_store

BLOCK = 512
END = b"\0" * (2 * BLOCK)  # two zero blocks close a tar archive


@dataclass(frozen=True)
class Entry:
    header: bytes  # the tar (PAX) header of one file
    key: str  # in the object store
    size: int


def entry(name: str, key: str, size: int, mtime: float) -> Entry:
    """One regular file, readable by everyone once unpacked, owned by whoever unpacks it."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return Entry(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), key, size)


def padding(size: int) -> int:
    return -size % BLOCK


def tar_length(entries: list[Entry]) -> int:
    return sum(len(e.header) + e.size + padding(e.size) for e in entries) + len(END)


def tar_stream(entries: list[Entry]) -> Iterator[bytes]:
    """The archive's bytes; each file is read in chunks, never whole."""
    store = get_store()
    for e in entries:
        yield e.header
        yield from store.iter_range(e.key, 0, e.size)
        yield b"\0" * padding(e.size)
    yield END
