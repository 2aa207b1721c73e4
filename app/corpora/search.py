"""Searching a ready corpus from the API: opened indexes are kept (a few, least recently used dropped),
because opening one reads its segment metadata and memory-maps its offsets."""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import httpx

from app.core.errors import AppError
from app.corpora.index import CorpusIndex, open_index
from app.corpora.remote import RemoteSearchError

OPEN_INDEXES = 8
_open: OrderedDict[Path, CorpusIndex] = OrderedDict()
_lock = threading.Lock()


def opened(path: Path) -> CorpusIndex:
    with _lock:
        if path in _open:
            _open.move_to_end(path)
            return _open[path]
    try:
        index = open_index(path)
    except RemoteSearchError:
        raise
    except (OSError, ValueError) as exc:
        raise AppError(f"The corpus index at {path.name} is missing or damaged ({type(exc).__name__}); delete the "
                       "corpus and create it again from its file.", status_code=500, code="index_damaged") from exc
    with _lock:
        _open[path] = index
        while len(_open) > OPEN_INDEXES:
            _open.popitem(last=False)
    return index


def forget(path: Path) -> None:
    with _lock:
        _open.pop(path, None)


def search(path: Path, query: str, top_k: int) -> list[tuple[int, float, str]]:
    """(document, score, text) of the best `top_k` documents for `query`, best first."""
    try:
        index = opened(path)
        [hits] = index.search_many([query], top_k, threads=1)
        scores = dict(hits)
        return [(doc, scores[doc], text) for doc, text in index.texts(doc for doc, _ in hits)]
    except (RemoteSearchError, httpx.HTTPError) as exc:
        raise AppError(f"The search cluster holding this corpus failed ({exc}); try again later, or ask the "
                       "operator to check TUNEFORGE_SEARCH_URL.", status_code=503, code="search_unavailable",
                       headers={"Retry-After": "5"}) from exc
