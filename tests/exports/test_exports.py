"""POST/GET /v1/fine_tuning/jobs/{id}/export on the real app, PostgreSQL and Redis; the worker's task
runs in-process (`execute_export`), as a Celery worker would run it for the queued message."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from app.core.db import session_scope
from app.core.queue import waiting_messages
from app.models import JobExport
from app.models.base import utcnow
from tests.api.helpers import assert_error, auth
from tests.conftest import new_tenant
from tests.exports.helpers import finished_job
from workers.tasks.export_job import execute_export


@pytest.fixture(scope="module")
def lora_artifact(tiny_model_dir, tmp_path_factory) -> Path:
    """A real LoRA artifact over the registered `tiny-bert` (trained once for this module)."""
    from app.fsio import directory_sha256
    from app.training.base import BaseModelRef
    from app.training.registry import run_strategy
    from tests.training.conftest import context_factory

    base = BaseModelRef(id="tiny-bert", path=tiny_model_dir, sha256=directory_sha256(tiny_model_dir))
    ctx = context_factory(base, tmp_path_factory.mktemp("lora"))("lora", {"r": 4}, learning_rate=3e-2)
    assert run_strategy(ctx).status == "succeeded"
    return ctx.output_dir


def url(job_id: str) -> str:
    return f"/v1/fine_tuning/jobs/{job_id}/export"


def test_export_is_idempotent_and_publishes_merged_files_atomically(client, tenant, registered_tiny_model,
                                                                     lora_artifact, quiet_queue):
    tenant_id, key = tenant
    job_id = finished_job(tenant_id, lora_artifact)
    assert_error(client.get(url(job_id), headers=auth(key)), 404, "has no export yet", f"POST {url(job_id)}")
    before = waiting_messages()
    first = client.post(url(job_id), headers=auth(key))
    assert first.status_code == 202, first.text
    export = first.json()
    assert export["status"] == "queued" and export["id"].startswith("ftexp-") and export["files"] == []
    assert export["fine_tuning_job_id"] == job_id and export["error"] is None
    again = client.post(url(job_id), headers=auth(key))
    assert again.status_code == 202 and again.json()["id"] == export["id"]
    assert waiting_messages() == before + 1  # one message for one export, however often it is asked for

    assert execute_export(export["id"]) == "succeeded"
    assert execute_export(export["id"]) == "skipped"  # a duplicate message changes nothing
    done = client.get(url(job_id), headers=auth(key)).json()
    names = {f["name"] for f in done["files"]}
    assert done["status"] == "succeeded" and done["finished_at"] and done["bytes"] == sum(f["bytes"] for f in done["files"])
    assert {"merged/config.json", "merged/model.safetensors", "merged/tokenizer.json"} <= names
    listed = client.get(f"/v1/fine_tuning/jobs/{job_id}/artifacts", headers=auth(key)).json()["data"]
    assert names <= {a["name"] for a in listed} and "adapter/adapter_model.safetensors" in {a["name"] for a in listed}
    body = client.get(f"/v1/fine_tuning/jobs/{job_id}/artifacts/merged/config.json", headers=auth(key))
    entry = next(f for f in done["files"] if f["name"] == "merged/config.json")
    assert body.status_code == 200 and hashlib.sha256(body.content).hexdigest() == entry["sha256"]
    config = json.loads(body.content)
    assert config["architectures"] == ["BertForSequenceClassification"] and config["id2label"] == {"0": "neg", "1": "pos"}
    assert "peft" not in body.text

    third = client.post(url(job_id), headers=auth(key))
    assert third.status_code == 200 and third.json()["id"] == export["id"] and third.json()["status"] == "succeeded"
    with session_scope() as db:
        assert db.scalar(select(func.count()).where(JobExport.job_id == job_id)) == 1


def test_failed_export_says_why_and_asking_again_retries_it(client, tenant, registered_tiny_model, lora_artifact,
                                                            tiny_model_dir, tmp_path, quiet_queue):
    from app.base_models.service import register

    tenant_id, key = tenant
    missing = f"gone-{tenant_id[-8:]}"
    artifact = tmp_path / "art"
    shutil.copytree(lora_artifact, artifact)
    manifest = json.loads((artifact / "manifest.json").read_text())
    (artifact / "manifest.json").write_text(json.dumps({**manifest, "base_model": {**manifest["base_model"],
                                                                                   "id": missing}}))
    job_id = finished_job(tenant_id, artifact)
    export_id = client.post(url(job_id), headers=auth(key)).json()["id"]
    assert execute_export(export_id) == "failed"
    failed = client.get(url(job_id), headers=auth(key)).json()
    assert failed["status"] == "failed" and failed["files"] == [] and failed["error"]["code"] == "model_not_found"
    assert missing in failed["error"]["message"] and "register it again" in failed["error"]["message"]
    listed = client.get(f"/v1/fine_tuning/jobs/{job_id}/artifacts", headers=auth(key)).json()["data"]
    assert not [a for a in listed if a["name"].startswith("merged/")]

    with session_scope() as db:  # the operator restores the base; the tenant asks again
        register(db, missing, tiny_model_dir, tenant_id=tenant_id)
    before = waiting_messages()
    retried = client.post(url(job_id), headers=auth(key))
    assert retried.status_code == 202 and retried.json()["id"] == export_id and retried.json()["status"] == "queued"
    assert retried.json()["error"] is None and waiting_messages() == before + 1
    assert execute_export(export_id) == "succeeded"
    assert client.get(url(job_id), headers=auth(key)).json()["status"] == "succeeded"


def test_an_export_whose_worker_stopped_beating_is_queued_again(client, tenant, lora_artifact, quiet_queue):
    tenant_id, key = tenant
    job_id = finished_job(tenant_id, lora_artifact)
    export_id = client.post(url(job_id), headers=auth(key)).json()["id"]
    with session_scope() as db:
        db.execute(update(JobExport).where(JobExport.id == export_id).values(
            status="running", worker_id="dead:1", heartbeat_at=utcnow(), started_at=utcnow()))
    alive = client.post(url(job_id), headers=auth(key)).json()
    assert alive["status"] == "running"  # a beating worker keeps it
    with session_scope() as db:
        db.execute(update(JobExport).where(JobExport.id == export_id).values(
            heartbeat_at=utcnow() - timedelta(hours=1)))
    before = waiting_messages()
    taken = client.post(url(job_id), headers=auth(key))
    assert taken.status_code == 202 and taken.json()["status"] == "queued" and waiting_messages() == before + 1


def _artifact_dir(root: Path, method: str, peft_type: str | None = None) -> Path:
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"method": method, "base_model": {"id": "tiny-bert"}, "files": {}}))
    if peft_type:
        (root / "adapter").mkdir()
        (root / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type}))
    return root


@pytest.mark.parametrize(("method", "peft_type", "fragment"), [
    ("prompt_tuning", "PROMPT_TUNING", "virtual tokens cannot fold"),
    ("prefix_tuning", "PREFIX_TUNING", "virtual tokens cannot fold"),
    ("supervised", None, "already full weights"),
])
def test_unmergeable_methods_are_refused_with_the_reason(client, tenant, tmp_path, method, peft_type, fragment):
    tenant_id, key = tenant
    job_id = finished_job(tenant_id, _artifact_dir(tmp_path / "art", method, peft_type))
    error = assert_error(client.post(url(job_id), headers=auth(key)), 400, fragment, param="fine_tuning_job_id")
    assert error["code"] == "export_not_supported"
    assert_error(client.get(url(job_id), headers=auth(key)), 404, "no export yet")


def test_only_the_owners_finished_jobs_can_be_exported(client, tenant, lora_artifact):
    tenant_id, key = tenant
    _, other_key = new_tenant()
    done = finished_job(tenant_id, lora_artifact)
    assert_error(client.post(url(done), headers=auth(other_key)), 404, "no such fine-tuning job")
    assert_error(client.get(url(done), headers=auth(other_key)), 404, "no such fine-tuning job")
    assert_error(client.post(url("ftjob-nope"), headers=auth(key)), 404, "no such fine-tuning job")
    running = finished_job(tenant_id, None, status="running")
    assert_error(client.post(url(running), headers=auth(key)), 409, "only succeeded jobs can be exported",
                 f"GET /v1/fine_tuning/jobs/{running}")
    lost = finished_job(tenant_id, None)
    error = assert_error(client.post(url(lost), headers=auth(key)), 409, "missing or unreadable")
    assert error["code"] == "artifact_missing"
    assert_error(client.post(url(done)), 401)


def test_api_side_export_and_storage_modules_import_no_torch():
    code = ("import sys, app.main, app.exports.service, app.storage.service, app.training.export; "
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
