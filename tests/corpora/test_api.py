"""/v1/corpora against the real app, database and broker; indexing runs in process as a worker runs it."""
from __future__ import annotations

import gzip

import pytest

from app.core.db import session_scope
from app.corpora.service import index_dir
from app.models import Corpus
from app.tenants.service import create_api_key
from tests.api.helpers import assert_error, auth, jsonl
from tests.conftest import new_tenant
from tests.corpora.helpers import create_corpus, documents, text_file, upload_corpus
from workers.tasks.index_corpus import execute_index


@pytest.fixture(autouse=True)
def _isolated(quiet_queue, database):
    """The test queue starts empty, and no corpus an earlier module shared shows in every tenant's list."""
    from sqlalchemy import update

    with session_scope() as db:
        db.execute(update(Corpus).where(Corpus.shared.is_(True)).values(shared=False))


@pytest.fixture
def admin_key(database) -> str:
    with session_scope() as db:
        return create_api_key(db, None, role="admin")


def _index_path(corpus_id: str):
    with session_scope() as db:
        return index_dir(db.get(Corpus, corpus_id))


def test_create_index_search_delete(client, tenant):
    _, key = tenant
    docs = documents(500)
    docs[321] = "the zanzibar archipelago exports cloves"
    docs[42] = "cloves are a spice"
    content = gzip.compress(text_file(docs))
    created = create_corpus(client, key, content, index=False)
    assert created["object"] == "corpus" and created["status"] == "indexing" and created["name"] == "news"
    assert created["id"].startswith("corpus-") and created["bytes"] == len(content) and created["documents"] is None
    assert execute_index(created["id"]) == "ready"
    assert execute_index(created["id"]) == "skipped"  # a duplicate message
    corpus = client.get(f"/v1/corpora/{created['id']}", headers=auth(key)).json()
    assert corpus["status"] == "ready" and corpus["documents"] == 500 == corpus["indexed_documents"]
    assert corpus["index_bytes"] > 0 and corpus["error"] is None and corpus["shared"] is False
    found = client.post(f"/v1/corpora/{corpus['id']}/search", headers=auth(key),
                        json={"query": "Which archipelago exports clove?", "top_k": 3})
    assert found.status_code == 200, found.text
    hits = found.json()["data"]
    assert [h["document"] for h in hits[:2]] == [321, 42]
    assert hits[0]["text"] == docs[321] and hits[0]["score"] > hits[1]["score"] > 0
    assert [c["id"] for c in client.get("/v1/corpora", headers=auth(key)).json()["data"]] == [corpus["id"]]
    path = _index_path(corpus["id"])
    assert path.is_dir()
    deleted = client.delete(f"/v1/corpora/{corpus['id']}", headers=auth(key)).json()
    assert deleted == {"id": corpus["id"], "object": "corpus", "deleted": True}
    assert not path.exists()
    assert_error(client.get(f"/v1/corpora/{corpus['id']}", headers=auth(key)), 404, "no such corpus")


def test_jsonl_corpus_and_pagination(client, tenant):
    _, key = tenant
    ids = [create_corpus(client, key, jsonl([{"text": d, "id": i} for i, d in enumerate(documents(20, seed=s))]),
                         name=f"c{s}", index=False)["id"] for s in range(3)]
    first = client.get("/v1/corpora", headers=auth(key), params={"limit": 2}).json()
    assert [c["id"] for c in first["data"]] == ids[:0:-1] and first["has_more"]
    rest = client.get("/v1/corpora", headers=auth(key), params={"limit": 2, "after": first["last_id"]}).json()
    assert [c["id"] for c in rest["data"]] == ids[:1] and not rest["has_more"]
    assert execute_index(ids[0]) == "ready"
    assert client.get(f"/v1/corpora/{ids[0]}", headers=auth(key)).json()["documents"] == 20


def test_other_tenants_corpus_is_404_until_an_admin_shares_it(client, tenant, admin_key):
    _, owner = tenant
    _, other = new_tenant()
    corpus = create_corpus(client, owner, text_file(documents(50)))
    search = {"query": "market", "top_k": 2}
    for call in (lambda: client.get(f"/v1/corpora/{corpus['id']}", headers=auth(other)),
                 lambda: client.post(f"/v1/corpora/{corpus['id']}/search", headers=auth(other), json=search),
                 lambda: client.delete(f"/v1/corpora/{corpus['id']}", headers=auth(other))):
        assert_error(call(), 404, "no such corpus")
    assert client.get("/v1/corpora", headers=auth(other)).json()["data"] == []
    assert_error(client.post(f"/v1/admin/corpora/{corpus['id']}/share", headers=auth(owner), json={}), 403)
    shared = client.post(f"/v1/admin/corpora/{corpus['id']}/share", headers=auth(admin_key), json={"shared": True})
    assert shared.status_code == 200 and shared.json()["shared"] is True
    assert client.get(f"/v1/corpora/{corpus['id']}", headers=auth(other)).json()["shared"] is True
    assert corpus["id"] in [c["id"] for c in client.get("/v1/corpora", headers=auth(other)).json()["data"]]
    assert len(client.post(f"/v1/corpora/{corpus['id']}/search", headers=auth(other), json=search).json()["data"]) == 2
    assert_error(client.delete(f"/v1/corpora/{corpus['id']}", headers=auth(other)), 403, "only its owner")
    client.post(f"/v1/admin/corpora/{corpus['id']}/share", headers=auth(admin_key), json={"shared": False})
    assert_error(client.get(f"/v1/corpora/{corpus['id']}", headers=auth(other)), 404)
    assert_error(client.post("/v1/admin/corpora/corpus-nope/share", headers=auth(admin_key), json={}), 404)


def test_bad_create_and_search_requests(client, tenant):
    _, key = tenant
    _, other = new_tenant()
    theirs = upload_corpus(client, other, b"a doc\n").json()["id"]
    assert_error(client.post("/v1/corpora", headers=auth(key), json={"file": theirs}), 404, "no such file",
                 param="file")
    assert_error(client.post("/v1/corpora", headers=auth(key), json={}), 400, param="file")
    assert_error(client.post("/v1/corpora", headers=auth(key), json={"file": "x", "nme": "a"}), 400)
    training = client.post("/v1/files", headers=auth(key), files={"file": ("t.jsonl", b'{"text": "a", "label": 1}\n')},
                           data={"purpose": "fine-tune"}).json()["id"]
    assert client.post("/v1/corpora", headers=auth(key), json={"file": training}).status_code == 200
    waiting = create_corpus(client, key, text_file(documents(10)), index=False)
    assert_error(client.post(f"/v1/corpora/{waiting['id']}/search", headers=auth(key), json={"query": "market"}),
                 409, "still indexing", "poll")
    ready = create_corpus(client, key, text_file(documents(10)))
    url = f"/v1/corpora/{ready['id']}/search"
    for body, fragment in (({"query": ""}, "query"), ({"query": "  \n\t"}, "blank"),
                           ({"query": "a", "top_k": 0}, "top_k"), ({"query": "a", "top_k": -3}, "top_k"), ({"query": "a", "top_k": 100_000}, "top_k"),
                           ({"query": "a\x00b"}, "query"), ({"query": 5}, "query"), ({"top_k": 3}, "query"),
                           ({"query": "a", "top_k": "many"}, "top_k"), ({"query": "x" * 10_001}, "query")):
        assert_error(client.post(url, headers=auth(key), json=body), 400, fragment)


@pytest.mark.parametrize("query", ['title:"market', "(shares OR", "fell)", "+market -team", "*", "a:b:c", "\\",
                                   "[1 TO 9]", "{!}", "~^", "'", "ünïcödé ☃ 市场", "match^2", "market " * 1400])
def test_hostile_queries(client, tenant, query):
    _, key = tenant
    corpus = create_corpus(client, key, text_file(documents(30)))
    found = client.post(f"/v1/corpora/{corpus['id']}/search", headers=auth(key), json={"query": query})
    assert found.status_code == 200, found.text
    assert all(set(h) == {"document", "score", "text"} for h in found.json()["data"])


def test_failed_indexing_says_why(client, tenant):
    _, key = tenant
    corpus = create_corpus(client, key, text_file(documents(10)), index=False)
    with session_scope() as db:  # the file went away between creation and indexing
        from app.models import File
        db.delete(db.get(File, corpus["file"]))
    assert execute_index(corpus["id"]) == "failed"
    failed = client.get(f"/v1/corpora/{corpus['id']}", headers=auth(key)).json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "file_deleted"
    assert "upload it again" in failed["error"]["message"]
    assert_error(client.post(f"/v1/corpora/{corpus['id']}/search", headers=auth(key), json={"query": "x"}),
                 400, "failed to index")


def test_idempotent_create(client, tenant):
    _, key = tenant
    file = upload_corpus(client, key, text_file(documents(5))).json()["id"]
    headers = {**auth(key), "Idempotency-Key": "corpus-once"}
    first = client.post("/v1/corpora", headers=headers, json={"file": file}).json()
    assert client.post("/v1/corpora", headers=headers, json={"file": file}).json()["id"] == first["id"]
    assert len(client.get("/v1/corpora", headers=auth(key)).json()["data"]) == 1


def test_corpus_indexes_count_against_the_storage_quota(client, tenant):
    """An index takes disk like an upload: it shows in /v1/storage and counts toward max_storage_bytes,
    reserved at its text's size while it is built, at its real size once built."""
    from app.tenants.limits import set_limits, stored_bytes

    tenant_id, key = tenant
    content = text_file(documents(300))
    corpus = create_corpus(client, key, content)
    with session_scope() as db:
        assert stored_bytes(db, tenant_id) == len(content) + corpus["index_bytes"]
    report = client.get("/v1/storage", headers=auth(key)).json()
    assert report["corpus_indexes"] == {"bytes": corpus["index_bytes"], "count": 1}
    file_id = upload_corpus(client, key, content).json()["id"]
    with session_scope() as db:
        set_limits(db, tenant_id, max_storage_bytes=2 * len(content) + corpus["index_bytes"] + len(content) - 1)
    # room for the second upload, not for its index too
    refused = client.post("/v1/corpora", headers=auth(key), json={"file": file_id, "name": "again"})
    assert_error(refused, 429, "uploads and corpus indexes")
    assert len(client.get("/v1/corpora", headers=auth(key)).json()["data"]) == 1
    with session_scope() as db:
        set_limits(db, tenant_id, max_storage_bytes=None)
