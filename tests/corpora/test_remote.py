"""The OpenSearch/Elasticsearch backend (app/corpora/remote.py): the requests it builds and the answers
it parses, against responses written by hand from the documented `_msearch`, `_mget` and `_bulk`
formats (tests/corpora/fixtures/). The HTTP transport is the only stand-in: it is the true edge."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.corpora import remote
from app.corpora.index import open_index
from app.corpora.remote import INDEX_BODY, OpenSearchIndex, RemoteSearchError, build_remote_index, search_body
from app.training.data import DatasetError

FIXTURES = Path(__file__).parent / "fixtures"
INDEX = "tuneforge-corpus-corpus-abc"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"opensearch_{name}.json").read_text())


class Cluster:
    """Answers like a cluster from the fixtures and records every request."""

    def __init__(self, msearch: str = "msearch", bulk: str = "bulk"):
        self.requests: list[httpx.Request] = []
        self.msearch, self.bulk = fixture(msearch), fixture(bulk)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method
        if path == "/_msearch":
            n = len(request.content.splitlines()) // 2
            answers = self.msearch["responses"]
            return httpx.Response(200, json={**self.msearch, "responses": (answers * n)[:n] if n > len(answers)
                                             else answers[:n]})
        if path.endswith("/_mget"):
            return httpx.Response(200, json=fixture("mget"))
        if path == "/_bulk":
            return httpx.Response(200, json=self.bulk)
        if path.endswith("/_refresh"):
            return httpx.Response(200, json={"_shards": {"total": 2, "successful": 1, "failed": 0}})
        if path.endswith("/_stats/store"):
            return httpx.Response(200, json={"_all": {"primaries": {"store": {"size_in_bytes": 4321}},
                                                      "total": {"store": {"size_in_bytes": 8642}}}})
        if method == "DELETE":
            return httpx.Response(404, json={"error": {"type": "index_not_found_exception"}, "status": 404})
        if method == "PUT":
            return httpx.Response(200, json={"acknowledged": True, "shards_acknowledged": True, "index": path[1:]})
        return httpx.Response(400, json={"error": f"unexpected {method} {path}"})

    def client(self) -> httpx.Client:
        return httpx.Client(base_url="http://search:9200", transport=httpx.MockTransport(self))

    def ndjson(self, request: httpx.Request) -> list[dict]:
        assert request.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in request.content.splitlines()]


def test_msearch_request_and_parsing():
    cluster = Cluster()
    index = OpenSearchIndex(cluster.client(), INDEX, documents=2000)
    hostile = 'title:"xylophone (quixotic'
    results = index.search_many([hostile, "nothing matches"], top_k=3)
    assert results == [[(1234, 7.1023), (5, 3.5001), (77, 3.5001)], []]  # ties: lower id first
    [request] = cluster.requests
    assert request.method == "POST" and request.url.path == "/_msearch"
    assert cluster.ndjson(request) == [
        {"index": INDEX}, {"size": 3, "query": {"match": {"text": {"query": hostile}}}, "_source": False,
                           "track_total_hits": False},
        {"index": INDEX}, search_body("nothing matches", 3)]


def test_msearch_batches_and_errors(monkeypatch):
    cluster = Cluster()
    index = OpenSearchIndex(cluster.client(), INDEX, documents=10)
    assert len(index.search_many([f"q{i}" for i in range(150)], top_k=1)) == 150
    assert [len(cluster.ndjson(r)) // 2 for r in cluster.requests] == [100, 50]
    failing = OpenSearchIndex(Cluster(msearch="msearch_error").client(), "tuneforge-corpus-corpus-gone", 10)
    with pytest.raises(RemoteSearchError, match=r"no such index \[tuneforge-corpus-corpus-gone\]"):
        failing.search_many(["a"], top_k=1)


def test_mget_texts():
    cluster = Cluster()
    texts = list(OpenSearchIndex(cluster.client(), INDEX, documents=2000).texts([1234, 77]))
    assert texts == [(1234, "a xylophone of quixotic design"), (77, "quixotic plans")]
    [request] = cluster.requests
    assert request.url.path == f"/{INDEX}/_mget" and request.url.params["_source"] == "text"
    assert json.loads(request.content) == {"ids": ["1234", "77"]}


def test_bulk_load_writes_stats_without_the_url(tmp_path, monkeypatch):
    monkeypatch.setattr(remote, "BULK_BATCH", 5)
    source = tmp_path / "c.txt"
    source.write_text("".join(f"document {i}\n" for i in range(12)))
    cluster, seen = Cluster(), []
    stats = build_remote_index(source, tmp_path / "index", INDEX, cluster.client(), progress=seen.append)
    assert (stats.documents, stats.bytes, stats.index_bytes) == (12, source.stat().st_size, 4321)
    assert seen == [5, 10, 12]
    calls = [(r.method, r.url.path) for r in cluster.requests]
    assert calls == [("DELETE", f"/{INDEX}"), ("PUT", f"/{INDEX}")] + [("POST", "/_bulk")] * 3 + [
        ("POST", f"/{INDEX}/_refresh"), ("GET", f"/{INDEX}/_stats/store")]
    assert json.loads(cluster.requests[1].content) == INDEX_BODY
    bulk = [line for r in cluster.requests if r.url.path == "/_bulk" for line in cluster.ndjson(r)]
    assert bulk[:2] == [{"index": {"_index": INDEX, "_id": "0"}}, {"text": "document 0"}]
    assert [line["index"]["_id"] for line in bulk[::2]] == [str(i) for i in range(12)]
    written = json.loads((tmp_path / "index" / "stats.json").read_text())
    assert written == {"documents": 12, "bytes": stats.bytes, "index_bytes": 4321, "backend": "opensearch",
                       "index": INDEX}
    monkeypatch.setenv("TUNEFORGE_SEARCH_URL", "http://user:secret@search:9200")
    remote.search_settings.cache_clear()
    try:
        opened = open_index(tmp_path / "index")
        assert isinstance(opened, OpenSearchIndex) and opened.index == INDEX and opened.documents == 12
    finally:
        remote.search_settings.cache_clear()
    assert "secret" not in (tmp_path / "index" / "stats.json").read_text()


def test_bulk_refusals_and_bad_corpora(tmp_path):
    source = tmp_path / "c.txt"
    source.write_text("one\ntwo\n")
    with pytest.raises(RemoteSearchError, match="failed to parse field"):
        build_remote_index(source, tmp_path / "i", INDEX, Cluster(bulk="bulk_error").client())
    source.write_bytes(b"\n\n")
    with pytest.raises(DatasetError, match="no documents"):
        build_remote_index(source, tmp_path / "i", INDEX, Cluster().client())
    assert not (tmp_path / "i" / "stats.json").exists()


def test_search_endpoint_says_when_the_cluster_is_unreachable(tmp_path, monkeypatch):
    """A corpus on a cluster that does not answer: a 503 naming the setting, never a 500."""
    from app.core.errors import AppError
    from app.corpora import search

    (tmp_path / "stats.json").write_text(json.dumps({"documents": 3, "bytes": 9, "index_bytes": 1,
                                                     "backend": "opensearch", "index": INDEX}))
    monkeypatch.setenv("TUNEFORGE_SEARCH_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    remote.search_settings.cache_clear()
    try:
        with pytest.raises(AppError) as info:
            search.search(tmp_path, "anything", 3)
    finally:
        remote.search_settings.cache_clear()
        search.forget(tmp_path)
    assert info.value.status_code == 503 and "TUNEFORGE_SEARCH_URL" in info.value.message
