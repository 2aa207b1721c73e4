"""GET /v1/storage and /v1/admin/storage on the real app and PostgreSQL: a base model is counted once
however many jobs share it; per-task artifacts, merged exports and uploads are counted apart."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.artifacts.service import job_artifact_dir
from app.core.db import session_scope
from app.models import Artifact, BaseModel, Job, JobExport
from app.tenants.service import create_api_key
from tests.api.helpers import assert_error, auth, upload
from tests.conftest import new_tenant
from tests.exports.helpers import finished_job


@pytest.fixture
def admin_key(database) -> str:
    with session_scope() as db:
        return create_api_key(db, None, role="admin")


def _artifact(root: Path, delta_bytes: int) -> Path:
    (root / "delta").mkdir(parents=True)
    (root / "delta" / "delta.safetensors").write_bytes(b"\0" * delta_bytes)
    (root / "manifest.json").write_text(json.dumps({"method": "bitfit", "files": {}}))
    return root


def _jobs_with_artifacts(tenant_id: str, root: Path, sizes: list[int]) -> tuple[list[str], int]:
    """One succeeded job per size; returns the ids and their artifacts' total bytes."""
    ids = [finished_job(tenant_id, _artifact(root / f"a{i}", size)) for i, size in enumerate(sizes)]
    with session_scope() as db:
        total = sum(a.bytes for a in db.query(Artifact).filter(Artifact.job_id.in_(ids)))
    return ids, total


def _merged_export(job_id: str, tenant_id: str, size: int) -> None:
    with session_scope() as db:
        db.add(JobExport(id=f"ftexp-{job_id[-20:]}", job_id=job_id, tenant_id=tenant_id, status="succeeded",
                         attempt=1, bytes=size))
        db.add(Artifact(job_id=job_id, name="merged/model.safetensors", bytes=size, sha256="0" * 64))


def test_tenant_report_counts_the_shared_base_once(client, tenant, registered_tiny_model, tiny_model_dir, tmp_path):
    tenant_id, key = tenant
    ids, artifact_bytes = _jobs_with_artifacts(tenant_id, tmp_path, [1000, 2000, 3000])
    _merged_export(ids[0], tenant_id, 50_000)
    finished_job(tenant_id, None, status="running")
    assert upload(client, key, b'{"text": "a", "label": "x"}\n').status_code == 200
    other_id, other_key = new_tenant()
    _jobs_with_artifacts(other_id, tmp_path / "other", [7777])

    report = client.get("/v1/storage", headers=auth(key)).json()
    with session_scope() as db:
        tiny = db.get(BaseModel, "tiny-bert").bytes
    assert report["object"] == "storage.report" and report["tenant_id"] == tenant_id
    assert report["base_models"] == {"bytes": tiny, "count": 1, "data": [
        {"id": "tiny-bert", "bytes": tiny, "shared": True, "jobs": 4, "counted_in": "base_models"}]}
    assert report["artifacts"] == {"bytes": artifact_bytes, "files": 6, "jobs": 3, "bytes_per_job": artifact_bytes // 3}
    assert artifact_bytes > 6000
    assert report["merged_exports"] == {"bytes": 50_000, "files": 1, "exports": 1}
    assert report["files"] == {"bytes": 28, "count": 1}
    assert report["jobs"] == {"count": 4, "succeeded": 3}
    other = client.get("/v1/storage", headers=auth(other_key)).json()
    assert other["artifacts"]["jobs"] == 1 and other["merged_exports"]["bytes"] == 0 and other["files"]["count"] == 0
    assert other["base_models"]["data"][0]["jobs"] == 1


def test_an_adapted_encoder_is_counted_with_the_artifacts_it_lives_in(client, tenant, registered_tiny_model,
                                                                       tiny_model_dir, tmp_path):
    from app.base_models.service import register

    tenant_id, key = tenant
    job_id = finished_job(tenant_id, _artifact(tmp_path / "a", 10))
    with session_scope() as db:
        encoder = job_artifact_dir(db.get(Job, job_id)) / "encoder"
        shutil.copytree(tiny_model_dir, encoder)
        register(db, f"adapted:{job_id}", encoder, tenant_id=tenant_id, owned_by=tenant_id)
    report = client.get("/v1/storage", headers=auth(key)).json()
    adapted = next(m for m in report["base_models"]["data"] if m["id"] == f"adapted:{job_id}")
    assert adapted["shared"] is False and adapted["jobs"] == 0 and adapted["counted_in"] == "artifacts"
    assert report["base_models"]["count"] == 1 and report["base_models"]["bytes"] < 2 * adapted["bytes"]


def test_admin_report_lists_every_tenant_and_each_base_once(client, admin_key, tenant, registered_tiny_model,
                                                            tmp_path):
    tenant_id, key = tenant
    ids, artifact_bytes = _jobs_with_artifacts(tenant_id, tmp_path, [100, 200])
    _merged_export(ids[1], tenant_id, 999)
    idle_id, _ = new_tenant()

    report = client.get("/v1/admin/storage", headers=auth(admin_key)).json()
    tenants = {t["tenant_id"]: t for t in report["tenants"]}
    assert tenants[tenant_id]["artifacts"]["bytes"] == artifact_bytes and tenants[tenant_id]["jobs"]["count"] == 2
    assert tenants[tenant_id]["merged_exports"] == {"bytes": 999, "files": 1, "exports": 1}
    assert tenants[idle_id]["artifacts"]["bytes"] == 0 and tenants[idle_id]["jobs"]["count"] == 0
    for section in ("artifacts", "merged_exports", "files", "jobs"):
        for key_name in ("bytes", "files", "count", "exports", "succeeded"):
            if key_name in report[section]:
                assert report[section][key_name] == sum(t[section][key_name] for t in report["tenants"])
    ids_listed = [m["id"] for m in report["base_models"]["data"]]
    assert len(ids_listed) == len(set(ids_listed)) and "tiny-bert" in ids_listed
    assert report["base_models"]["bytes"] == sum(m["bytes"] for m in report["base_models"]["data"]
                                                 if m["counted_in"] == "base_models")
    assert next(m for m in report["base_models"]["data"] if m["id"] == "tiny-bert")["jobs"] >= 2


def test_storage_reports_keep_roles_apart(client, admin_key, tenant):
    _, key = tenant
    assert_error(client.get("/v1/admin/storage", headers=auth(key)), 403, "admin key")
    assert_error(client.get("/v1/storage", headers=auth(admin_key)), 403, "tenant's key")
    assert_error(client.get("/v1/storage"), 401, "missing api key")
