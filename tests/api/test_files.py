"""/v1/files against the real app and database."""
from __future__ import annotations

from sqlalchemy import func, select

from app.core.db import session_scope
from app.models import File
from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload
from tests.conftest import new_tenant


def _count_files(tenant_id: str) -> int:
    with session_scope() as db:
        return db.scalar(select(func.count()).select_from(File).where(File.tenant_id == tenant_id))


def test_upload_list_retrieve_content_delete(client, tenant):
    tenant_id, key = tenant
    content = jsonl(classification_rows())
    created = upload(client, key, content, filename="../../etc/passwd.jsonl")
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["object"] == "file" and body["bytes"] == len(content) and body["purpose"] == "fine-tune"
    assert "/" not in body["filename"]
    listed = client.get("/v1/files", headers=auth(key)).json()
    assert [f["id"] for f in listed["data"]] == [body["id"]]
    assert client.get(f"/v1/files/{body['id']}", headers=auth(key)).json()["id"] == body["id"]
    downloaded = client.get(f"/v1/files/{body['id']}/content", headers=auth(key))
    assert downloaded.content == content
    deleted = client.delete(f"/v1/files/{body['id']}", headers=auth(key)).json()
    assert deleted == {"id": body["id"], "object": "file", "deleted": True}
    assert_error(client.get(f"/v1/files/{body['id']}", headers=auth(key)), 404, "no such file")


def test_bad_uploads_store_nothing(client, tenant, data_dir):
    tenant_id, key = tenant
    cases = [
        (b"", 400, "empty"),
        (b'{"text": "a", "label": 1}\nnot json\n', 400, "line 2"),
        (b'{"text": "a", "label": 1}\n[1, 2]\n', 400, "line 2"),
        (b'{"text": "caf\xe9", "label": 1}\n', 400, "line 1"),
        (b"\n\n\n", 400, "no json lines"),
    ]
    for content, status, fragment in cases:
        assert_error(upload(client, key, content), status, fragment)
    assert_error(upload(client, key, jsonl(classification_rows()), purpose="assistants"), 400, "purpose",
                 param="purpose")
    assert _count_files(tenant_id) == 0
    stored = list((data_dir / "files" / tenant_id).glob("*")) if (data_dir / "files" / tenant_id).exists() else []
    assert stored == []


def test_upload_over_limit_is_413_and_stores_nothing(client, tenant, monkeypatch):
    from app.core.config import get_settings

    tenant_id, key = tenant
    monkeypatch.setattr(get_settings(), "max_upload_bytes", 1000)
    response = upload(client, key, jsonl(classification_rows(200)))
    assert_error(response, 413, "limit")
    assert _count_files(tenant_id) == 0


def test_other_tenants_file_is_404_everywhere(client, tenant):
    _, key = tenant
    _, other_key = new_tenant()
    file_id = upload(client, key, jsonl(classification_rows())).json()["id"]
    for method, path in [("get", f"/v1/files/{file_id}"), ("get", f"/v1/files/{file_id}/content"),
                         ("delete", f"/v1/files/{file_id}")]:
        assert_error(getattr(client, method)(path, headers=auth(other_key)), 404, file_id)
    assert client.get("/v1/files", headers=auth(other_key)).json()["data"] == []
    assert client.get(f"/v1/files/{file_id}", headers=auth(key)).status_code == 200


def test_auth_errors_are_401_in_openai_shape(client):
    assert_error(client.get("/v1/files"), 401, "missing api key")
    assert_error(client.get("/v1/files", headers=auth("tf-wrong")), 401, "incorrect api key")
    # authentication runs before the body is read or validated
    assert_error(client.post("/v1/fine_tuning/jobs", content=b"{not json"), 401)


def test_pagination_after_and_limit(client, tenant):
    _, key = tenant
    ids = [upload(client, key, jsonl(classification_rows())).json()["id"] for _ in range(3)]
    first = client.get("/v1/files?limit=2", headers=auth(key)).json()
    assert [f["id"] for f in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    rest = client.get(f"/v1/files?limit=2&after={first['data'][-1]['id']}", headers=auth(key)).json()
    assert [f["id"] for f in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert_error(client.get("/v1/files?limit=0", headers=auth(key)), 400, "limit")
    assert_error(client.get("/v1/files?limit=abc", headers=auth(key)), 400, "limit")


CORPUS_DOCS = [f"the match ended {i} to nil after extra time" for i in range(40)]


def _corpus_variants() -> dict[str, bytes]:
    import gzip

    text = ("\n".join(CORPUS_DOCS) + "\n").encode()
    rows = jsonl([{"text": d, "source": "x"} for d in CORPUS_DOCS])
    return {"corpus.txt": text, "corpus.jsonl": rows, "corpus.txt.gz": gzip.compress(text),
            "no-suffix": gzip.compress(rows)}  # gzip is told by its magic bytes, not the name


def test_corpus_uploads_text_jsonl_and_gzip(client, tenant, registered_tiny_model):
    from tests.api.test_jobs import create

    _, key = tenant
    train = upload(client, key, jsonl(classification_rows())).json()["id"]
    for filename, content in _corpus_variants().items():
        created = upload(client, key, content, filename=filename, purpose="corpus")
        assert created.status_code == 200, (filename, created.text)
        body = created.json()
        assert body["purpose"] == "corpus" and body["bytes"] == len(content)
        assert client.get(f"/v1/files/{body['id']}/content", headers=auth(key)).content == content
        # a corpus file is adaptive's corpus_file as it is: the job checks it through the same reader
        job = create(client, key, model=registered_tiny_model, training_file=train,
                     method={"type": "adaptive", "adaptive": {"corpus_file": body["id"]}})
        assert job.status_code == 200, (filename, job.text)
    listed = client.get("/v1/files", headers=auth(key), params={"purpose": "corpus"}).json()["data"]
    assert len(listed) == 4 and {f["purpose"] for f in listed} == {"corpus"}


def test_bad_corpus_uploads_name_the_line_and_store_nothing(client, tenant, data_dir):
    import gzip

    tenant_id, key = tenant
    cases = [
        (b"", "empty"),
        (b"\n  \n\t\n", "no documents"),
        (gzip.compress(b"\n\n"), "no documents"),
        (b"one doc\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n", "line 2: not valid UTF-8", "binary file"),
        (b"one doc\ntwo\x00\x01\x02\n", "line 2: binary content"),
        (b"\xff\xd8\xff\xe0 jpeg bytes\n", "line 1: not valid UTF-8"),
        (gzip.compress(b"fine\nalso fine\ncaf\xe9\n"), "line 3: not valid UTF-8"),
        (b'{"text": "a"}\n{"body": "b"}\n', 'line 2: needs a "text" string'),
        (b'{"text": "a"}\n{"text": null}\n', "line 2"),
        (b'{"text": "a"}\nnot json\n', "line 2: not valid json"),
        (gzip.compress(b"".join(b"line %d\n" % i for i in range(50_000)))[:5000], "gzip stream is damaged"),
    ]
    for content, *fragments in cases:
        assert_error(upload(client, key, content, filename="c.txt", purpose="corpus"), 400, *fragments, param="file")
    assert _count_files(tenant_id) == 0
    stored = list((data_dir / "files" / tenant_id).glob("*")) if (data_dir / "files" / tenant_id).exists() else []
    assert stored == []


def test_large_corpus_streams_to_disk(client, tenant):
    """~24 MB of text (400k documents) in one upload: stored, checksummed and counted by streaming."""
    import hashlib

    _, key = tenant
    content = b"".join(b"document %d about the match, the market and the budget\n" % i for i in range(400_000))
    created = upload(client, key, content, filename="big.txt", purpose="corpus")
    assert created.status_code == 200, created.text
    assert created.json()["bytes"] == len(content) and created.json()["sha256"] == hashlib.sha256(content).hexdigest()
