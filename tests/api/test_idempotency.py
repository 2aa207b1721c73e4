"""Exactly-once creation: Idempotency-Key replays and safe retries without a key."""
from __future__ import annotations

from sqlalchemy import func, select

from app.core.db import session_scope
from app.models import File, Job
from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload
from tests.conftest import new_tenant


def _count(model, tenant_id: str) -> int:
    with session_scope() as db:
        return db.scalar(select(func.count()).select_from(model).where(model.tenant_id == tenant_id))


def _create(client, key, body, idem=None):
    headers = {**auth(key), **({"Idempotency-Key": idem} if idem else {})}
    return client.post("/v1/fine_tuning/jobs", headers=headers, json=body)


def test_job_key_replays_first_response_and_rejects_other_body(client, tenant, registered_tiny_model):
    tenant_id, key = tenant
    file_id = upload(client, key, jsonl(classification_rows())).json()["id"]
    body = {"model": registered_tiny_model, "training_file": file_id, "seed": 1}
    first = _create(client, key, body, idem="create-1")
    again = _create(client, key, body, idem="create-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert _count(Job, tenant_id) == 1
    conflict = _create(client, key, {**body, "seed": 2}, idem="create-1")
    assert_error(conflict, 409, "different request body", param="Idempotency-Key")
    assert conflict.headers["x-should-retry"] == "false"
    assert _count(Job, tenant_id) == 1
    # keys are scoped per tenant
    _, other_key = new_tenant()
    other_file = upload(client, other_key, jsonl(classification_rows())).json()["id"]
    other = _create(client, other_key, {**body, "training_file": other_file}, idem="create-1")
    assert other.status_code == 200 and other.json()["id"] != first.json()["id"]


def test_retry_without_key_returns_the_same_job(client, tenant, registered_tiny_model):
    tenant_id, key = tenant
    file_id = upload(client, key, jsonl(classification_rows())).json()["id"]
    body = {"model": registered_tiny_model, "training_file": file_id, "seed": 4}
    first, retry = _create(client, key, body), _create(client, key, body)
    assert first.json()["id"] == retry.json()["id"]
    distinct = _create(client, key, {**body, "seed": 5})
    assert distinct.json()["id"] != first.json()["id"]
    assert _count(Job, tenant_id) == 2


def test_file_upload_key(client, tenant, data_dir):
    tenant_id, key = tenant
    content = jsonl(classification_rows())
    headers = {**auth(key), "Idempotency-Key": "upload-1"}
    send = lambda data: client.post("/v1/files", headers=headers, files={"file": ("t.jsonl", data)},  # noqa: E731
                                    data={"purpose": "fine-tune"})
    first, again = send(content), send(content)
    assert first.json() == again.json()
    assert_error(send(jsonl(classification_rows(30))), 409, "different request body")
    assert _count(File, tenant_id) == 1
    assert len(list((data_dir / "files" / tenant_id).iterdir())) == 1


def test_bad_idempotency_key(client, tenant, registered_tiny_model):
    _, key = tenant
    assert_error(_create(client, key, {"model": registered_tiny_model, "training_file": "f"}, idem="x" * 300),
                 400, "Idempotency-Key")
