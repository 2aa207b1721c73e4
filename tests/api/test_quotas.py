"""Per-tenant quotas from the database: 429 in OpenAI's shape, nothing stored."""
from __future__ import annotations

import subprocess
import sys

from sqlalchemy import func, select

from app.core.db import session_scope
from app.models import File, Job
from app.tenants.limits import set_limits
from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload


def _limit(tenant_id: str, **values) -> None:
    with session_scope() as db:
        set_limits(db, tenant_id, **values)


def _count(model, tenant_id: str) -> int:
    with session_scope() as db:
        return db.scalar(select(func.count()).select_from(model).where(model.tenant_id == tenant_id))


def test_queued_job_quota(client, tenant, registered_tiny_model):
    tenant_id, key = tenant
    file_id = upload(client, key, jsonl(classification_rows())).json()["id"]
    _limit(tenant_id, max_queued_jobs=1)
    body = {"model": registered_tiny_model, "training_file": file_id}
    assert client.post("/v1/fine_tuning/jobs", headers=auth(key), json={**body, "seed": 1}).status_code == 200
    response = client.post("/v1/fine_tuning/jobs", headers=auth(key), json={**body, "seed": 2})
    assert_error(response, 429, "limit for this account is 1")
    assert response.headers["x-should-retry"] == "false"
    assert _count(Job, tenant_id) == 1


def test_storage_and_upload_quotas(client, tenant, data_dir):
    tenant_id, key = tenant
    content = jsonl(classification_rows())
    _limit(tenant_id, max_storage_bytes=len(content) + 10)
    assert upload(client, key, content).status_code == 200
    assert_error(upload(client, key, content), 429, "storage limit")
    _limit(tenant_id, max_storage_bytes=None, max_upload_bytes=100)
    assert_error(upload(client, key, content), 413, "limit of 100 bytes")
    assert _count(File, tenant_id) == 1
    assert len(list((data_dir / "files" / tenant_id).iterdir())) == 1


def test_request_rate_limit(client, tenant):
    tenant_id, key = tenant
    _limit(tenant_id, requests_per_second=3)
    statuses = [client.get("/v1/files", headers=auth(key)) for _ in range(12)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and limited[0].headers["Retry-After"] == "1"
    assert limited[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert sum(r.status_code == 200 for r in statuses) >= 3


def test_operator_sets_limits_from_the_cli(tenant):
    tenant_id, _ = tenant
    with session_scope() as db:
        from app.models import Tenant

        name = db.get(Tenant, tenant_id).name
    out = subprocess.run([sys.executable, "-m", "app.cli", "tenants", "limits", name, "--max-queued-jobs", "7"],
                         capture_output=True, text=True, check=True).stdout
    assert "max_queued_jobs: 7" in out and "max_running_jobs: None" in out
