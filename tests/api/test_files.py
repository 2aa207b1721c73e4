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
