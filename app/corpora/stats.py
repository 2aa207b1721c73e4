"""What every corpus index backend shares: the stats file each index directory holds and the CorpusIndex
protocol TLM retrieval (Yao et al. 2022) codes against. app.corpora.index (tantivy, and the dispatch) and
app.corpora.remote (a search cluster) both build on it."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

STATS = "stats.json"


@dataclass(frozen=True)
class IndexStats:
    documents: int
    bytes: int  # the source file as stored (compressed if it was uploaded gzip)
    index_bytes: int  # everything in the index directory: inverted index + text store


class CorpusIndex(Protocol):
    documents: int

    def search_many(self, queries: Sequence[str], top_k: int, threads: int = 2) -> list[list[tuple[int, float]]]:
        """For each query, up to top_k (document id, BM25 score), best first (ties: lower id first)."""
        ...

    def texts(self, ids: Iterable[int]) -> Iterator[tuple[int, str]]:
        """(id, text) for each id, in the order given, read from disk."""
        ...


def read_stats(path: Path) -> dict:
    return json.loads((path / STATS).read_text())
