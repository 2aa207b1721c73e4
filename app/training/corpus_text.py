"""The one reader of unlabelled corpora: plain text (one document per line) or JSONL `{"text"}`,
either of them gzip-compressed (detected by the magic bytes, not the name), streamed line by line.

Used by the upload check (purpose "corpus"), the BM25 indexer (app.corpora.index) and MLM phases
(DAPT streams `corpus_file` through iter_texts, app.training.mlm_stream). The format is decided by the first
non-blank line: a JSON object there makes the file JSONL, and then every line must be one. Errors
are DatasetErrors naming the 1-based line, because the person who uploaded the file reads them.
"""
from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from app.training.data import DatasetError, _json_type

GZIP_MAGIC = b"\x1f\x8b"
EMPTY_CORPUS = ("the corpus has no documents (only blank lines or empty texts); write one document per line, "
                'or one JSON object {"text": ...} per line')


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


@contextmanager
def open_corpus(path: Path) -> Iterator[IO[bytes]]:
    """The file's (decompressed) bytes as a binary stream."""
    stream: IO[bytes] = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # type: ignore[assignment]
    try:
        yield stream
    finally:
        stream.close()


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(1-based number, decoded line without its line break); binary or non-UTF-8 content raises."""
    number = 0
    try:
        for number, raw in enumerate(stream, start=1):
            if b"\0" in raw:
                raise DatasetError("binary content (a NUL byte); upload text: one document per line or "
                                   'JSONL {"text": ...}', number)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"not valid UTF-8 (byte {exc.start} of the line): a binary file or another "
                                   "encoding; upload text saved as UTF-8", number) from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield number, line.rstrip("\r\n")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(f"the gzip stream is damaged after line {number} ({exc}); compress the file again",
                           number + 1) from None


def _json_text(number: int, line: str, field_name: str) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON ({exc.msg} at column {exc.colno}); the file's first line is JSON, "
                           "so every line must be one JSON object", number) from None
    value = obj.get(field_name) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        got = f"a JSON {_json_type(obj)}, not an object" if not isinstance(obj, dict) else \
            (_json_type(value) if field_name in obj else "none")
        raise DatasetError(f'needs a "{field_name}" string, got {got}; write one {{"{field_name}": "..."}} '
                           "object per line", number)
    return value


def iter_documents(path: Path, field_name: str = "text") -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank document, in file order; the first bad line raises."""
    jsonl: bool | None = None
    with open_corpus(path) as stream:
        for number, line in _lines(stream):
            if not line.strip():
                continue
            if jsonl is None:
                jsonl = line.lstrip().startswith("{")
            text = _json_text(number, line, field_name) if jsonl else line
            if text.strip():
                yield number, text


def count_documents(path: Path) -> int:
    """Validate a whole corpus by streaming it; returns its number of documents (0 raises)."""
    n = sum(1 for _ in iter_documents(path))
    if n == 0:
        raise DatasetError(EMPTY_CORPUS)
    return n


def iter_texts(path: Path, field_name: str = "text") -> Iterator[str]:
    """The non-blank texts of an unlabelled corpus, for masked-language-model phases: JSONL `{"text"}`
    (other fields, labels included, are ignored) or plain text one document per line, maybe gzip —
    Raises DatasetError naming the first bad line."""
    for _, text in iter_documents(path, field_name):
        yield text


def _enough_texts(n: int) -> None:
    if n < 2:
        raise DatasetError(f"the corpus has {n} non-blank text(s); masked-language-model training needs "
                           "at least 2 (one is held out to score the model)")


def load_texts(path: Path) -> list[str]:
    texts = list(iter_texts(path))
    _enough_texts(len(texts))
    return texts


def validate_texts(path: Path) -> int:
    """Check a corpus without holding it in memory (the API does this at submission)."""
    n = sum(1 for _ in iter_texts(path))
    _enough_texts(n)
    return n
