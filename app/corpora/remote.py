"""The second CorpusIndex backend: an OpenSearch / Elasticsearch cluster, for corpora beyond one machine.

BM25 is the clusters' default similarity; a query is sent as a `match` query on the `text` field (analysed
by the cluster with the same analyser as the documents, never parsed as query syntax, so `:` `(` `"` are
plain characters), many at once through `_msearch`; texts come back through `_mget`. Document ids are the
documents' numbers 0..n-1 in file order, stored as `_id`.

Point the service at a cluster with `TUNEFORGE_SEARCH_URL` (e.g. `https://user:password@search:9200`);
new corpora are then bulk-loaded into the index `TUNEFORGE_SEARCH_INDEX_PREFIX` + corpus id, and the
corpus's index directory holds only stats.json naming that index (the URL and its credentials are read
from the setting each time, never written to disk). Unset (the default), corpora use tantivy on disk.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.corpora.stats import STATS, IndexStats, read_stats
from app.fsio import replace_file
from app.training.corpus_text import EMPTY_CORPUS, iter_documents
from app.training.data import DatasetError

FIELD = "text"
MSEARCH_BATCH = 100  # queries per _msearch request
MGET_BATCH = 500  # ids per _mget request
BULK_BATCH = 5000  # documents per _bulk request
INDEX_BODY = {"settings": {"index": {"similarity": {"default": {"type": "BM25", "k1": 1.2, "b": 0.75}}}},
              "mappings": {"properties": {FIELD: {"type": "text", "analyzer": "english"}}}}


class SearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEFORGE_", extra="ignore")
    search_url: str | None = None  # an OpenSearch/Elasticsearch base URL; unset: tantivy on disk
    search_index_prefix: str = "tuneforge-corpus-"
    search_timeout: float = 60.0


@lru_cache
def search_settings() -> SearchSettings:
    return SearchSettings()


class RemoteSearchError(OSError):
    """The cluster refused or failed a request (or is not configured); the message carries the reason.
    An OSError: to a caller it is the index's storage failing, as a missing index directory would."""


def _client(url: str, timeout: float) -> httpx.Client:
    return httpx.Client(base_url=url.rstrip("/"), timeout=timeout)


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise RemoteSearchError(f"search cluster answered {response.status_code} to {response.request.method} "
                                f"{response.request.url.path}: {response.text[:500]}")
    return response.json()


def ndjson(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)


def search_body(query: str, top_k: int) -> dict[str, Any]:
    """One query: BM25 over the analysed words of `query` (a `match`, not a `query_string`)."""
    return {"size": top_k, "query": {"match": {FIELD: {"query": query}}}, "_source": False,
            "track_total_hits": False}


def parse_msearch(body: dict[str, Any]) -> list[list[tuple[int, float]]]:
    """An `_msearch` answer as (document id, score) lists, best first; a failed query raises."""
    results = []
    for number, response in enumerate(body["responses"]):
        if "error" in response:
            reason = response["error"].get("reason", response["error"]) if isinstance(response["error"], dict) \
                else response["error"]
            raise RemoteSearchError(f"query {number} of the batch failed on the search cluster: {reason}")
        hits = [(int(hit["_id"]), float(hit["_score"])) for hit in response["hits"]["hits"]]
        results.append(sorted(hits, key=lambda h: (-h[1], h[0])))
    return results


class OpenSearchIndex:
    """A corpus indexed in a cluster; `client` is an httpx.Client whose base_url is the cluster."""

    def __init__(self, client: httpx.Client, index: str, documents: int):
        self._client, self.index, self.documents = client, index, documents

    @classmethod
    def from_dir(cls, path: Path) -> OpenSearchIndex:
        settings = search_settings()
        if not settings.search_url:
            raise RemoteSearchError(f"{path.name} lives on a search cluster but TUNEFORGE_SEARCH_URL is not set")
        stats = read_stats(path)
        return cls(_client(settings.search_url, settings.search_timeout), stats["index"], stats["documents"])

    def search_many(self, queries: Sequence[str], top_k: int, threads: int = 2) -> list[list[tuple[int, float]]]:
        results: list[list[tuple[int, float]]] = []
        for start in range(0, len(queries), MSEARCH_BATCH):
            batch = queries[start:start + MSEARCH_BATCH]
            lines = [line for q in batch for line in ({"index": self.index}, search_body(q, top_k))]
            response = self._client.post("/_msearch", content=ndjson(lines),
                                         headers={"Content-Type": "application/x-ndjson"})
            results.extend(parse_msearch(_checked(response)))
        return results

    def texts(self, ids: Iterable[int]) -> Iterator[tuple[int, str]]:
        wanted = list(ids)
        for start in range(0, len(wanted), MGET_BATCH):
            batch = wanted[start:start + MGET_BATCH]
            body = _checked(self._client.post(f"/{self.index}/_mget", params={"_source": FIELD},
                                              json={"ids": [str(i) for i in batch]}))
            for doc, found in zip(batch, body["docs"], strict=True):
                if not found.get("found"):
                    raise IndexError(f"document {doc} is not in search index {self.index}")
                yield doc, found["_source"][FIELD]


def build_remote_index(source: Path, dest: Path, index: str, client: httpx.Client,
                       progress: Callable[[int], None] | None = None) -> IndexStats:
    """Bulk-load `source` into cluster index `index` (created afresh), then record it in `dest`/stats.json.
    Raises DatasetError for a bad corpus (as build_index does) and RemoteSearchError for the cluster."""
    client.delete(f"/{index}")  # a half-loaded earlier attempt; 404 when there is none
    _checked(client.put(f"/{index}", json=INDEX_BODY))
    n, batch = 0, []

    def flush() -> None:
        body = _checked(client.post("/_bulk", content=ndjson(batch), headers={"Content-Type": "application/x-ndjson"}))
        if body.get("errors"):
            first = next(item for item in body["items"] if "error" in item.get("index", {}))["index"]["error"]
            raise RemoteSearchError(f"the search cluster refused documents: {first.get('reason', first)}")
        batch.clear()
        if progress is not None:
            progress(n)

    for _, text in iter_documents(source):
        batch += [{"index": {"_index": index, "_id": str(n)}}, {FIELD: text}]
        n += 1
        if n % BULK_BATCH == 0:
            flush()
    if n == 0:
        raise DatasetError(EMPTY_CORPUS)
    if batch:
        flush()
    _checked(client.post(f"/{index}/_refresh"))
    size = _checked(client.get(f"/{index}/_stats/store"))["_all"]["primaries"]["store"]["size_in_bytes"]
    stats = IndexStats(documents=n, bytes=source.stat().st_size, index_bytes=int(size))
    dest.mkdir(parents=True, exist_ok=True)
    replace_file(dest / STATS, json.dumps({**asdict(stats), "backend": "opensearch", "index": index}))
    return stats


def drop_remote(stats: dict[str, Any]) -> None:
    """Delete a corpus's cluster index (DELETE /v1/corpora/{id}); a cluster that is not configured or not
    reachable leaves it for the operator, with a RemoteSearchError saying so."""
    settings = search_settings()
    if not settings.search_url:
        raise RemoteSearchError(f"cannot delete search index {stats['index']}: TUNEFORGE_SEARCH_URL is not set")
    with _client(settings.search_url, settings.search_timeout) as client:
        response = client.delete(f"/{stats['index']}")
        if response.status_code != 404:
            _checked(response)


def build_on_cluster(source: Path, dest: Path, name: str, progress: Callable[[int], None] | None = None) -> IndexStats:
    """Load the corpus into the configured cluster's index prefix + `name`; `dest` records which."""
    settings = search_settings()
    with _client(settings.search_url, settings.search_timeout) as client:
        return build_remote_index(source, dest, f"{settings.search_index_prefix}{name}".lower(), client, progress)
