"""Jobs survive a SIGKILLed worker and pause/resume, and end where an uninterrupted run ends; an export
survives a SIGKILLed worker too."""
from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from safetensors.torch import load_file

from app.artifacts.service import job_artifact_dir
from app.core.db import session_scope
from app.models import Job, JobExport
from tests.e2e.conftest import wait_for
from tests.e2e.test_service import FINAL, download_artifacts, run_job
from tests.tiny_models import make_classification_rows

ROWS = make_classification_rows(1200, seed=11)
METHOD = {"type": "lora", "lora": {"r": 4, "hyperparameters": {
    "n_epochs": 1, "batch_size": 4, "checkpoint_every": 30, "learning_rate": 1e-3, "max_length": 16}}}


def _submit(client, tag: str) -> str:
    import json

    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    file_id = client.files.create(file=(f"{tag}.jsonl", io.BytesIO(data)), purpose="fine-tune").id
    return client.fine_tuning.jobs.create(model="tiny-bert", training_file=file_id, seed=21,
                                          extra_body={"method": METHOD}).id


def _finish(client, job_id: str):
    return wait_for(lambda: client.fine_tuning.jobs.retrieve(job_id), lambda j: j.status in FINAL, timeout=300)


def _adapter(service, client, job_id: str, dest: Path) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    download_artifacts(service, client, job_id, dest)
    return load_file(dest / "adapter" / "adapter_model.safetensors")


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() < 1e-5, key


@pytest.fixture(scope="module")
def reference(service, openai_client, tmp_path_factory) -> dict:
    job_id = _submit(openai_client, "reference")
    assert _finish(openai_client, job_id).status == "succeeded"
    return _adapter(service, openai_client, job_id, tmp_path_factory.mktemp("reference"))


def test_worker_killed_mid_training_resumes_from_checkpoint(service, openai_client, reference, tmp_path):
    job_id = _submit(openai_client, "killed")
    wait_for(lambda: openai_client.fine_tuning.jobs.checkpoints.list(job_id).data, lambda c: len(c) > 0,
             timeout=120, interval=0.05)
    service.processes["worker"].kill()  # SIGKILL: no cleanup, no final write
    service.processes["worker"].wait()
    assert openai_client.fine_tuning.jobs.retrieve(job_id).status == "running"
    service.start_worker()
    done = _finish(openai_client, job_id)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in openai_client.fine_tuning.jobs.list_events(job_id, limit=100).data]
    assert any("re-queued for attempt 2" in m for m in messages)
    assert any("Resumed from checkpoint at step" in m for m in messages)
    assert any("attempt 2" in m for m in messages)
    _assert_same(reference, _adapter(service, openai_client, job_id, tmp_path))


def test_pause_then_resume_continues_from_checkpoint(service, openai_client, reference, tmp_path):
    job_id = _submit(openai_client, "paused")
    wait_for(lambda: openai_client.fine_tuning.jobs.list_events(job_id, limit=50).data,
             lambda evs: any(e.type == "metrics" for e in evs), timeout=120, interval=0.05)
    paused = openai_client.post(f"/fine_tuning/jobs/{job_id}/pause", cast_to=dict)
    assert paused["status"] in ("pausing", "paused")
    wait_for(lambda: openai_client.fine_tuning.jobs.retrieve(job_id), lambda j: j.status == "paused", timeout=60)
    assert openai_client.fine_tuning.jobs.checkpoints.list(job_id).data
    resumed = openai_client.post(f"/fine_tuning/jobs/{job_id}/resume", cast_to=dict)
    assert resumed["status"] == "queued"
    done = _finish(openai_client, job_id)
    assert done.status == "succeeded", done.error
    _assert_same(reference, _adapter(service, openai_client, job_id, tmp_path))


def _export_row(export_id: str) -> JobExport:
    with session_scope() as db:
        export = db.get(JobExport, export_id)
        db.expunge(export)
        return export


def test_export_whose_worker_was_killed_is_requeued_and_succeeds(service, openai_client):
    """A worker SIGKILLed while it holds an export, with no request after: the reaper re-queues the
    export once its heartbeat is stale and the next worker merges it. The job's manifest is a FIFO
    while the first worker claims, so that worker blocks mid-export and the kill lands there."""
    job = run_job(openai_client, "tiny-bert", METHOD, valid_rows=False)
    assert job.status == "succeeded", job.error
    url = f"{service.url}/v1/fine_tuning/jobs/{job.id}/export"
    headers = {"Authorization": f"Bearer {openai_client.api_key}"}
    service.processes["worker"].terminate()
    service.processes["worker"].wait()
    export_id = httpx.post(url, headers=headers).json()["id"]  # its message waits for a worker
    with session_scope() as db:
        manifest = job_artifact_dir(db.get(Job, job.id)) / "manifest.json"
    saved = manifest.read_bytes()
    manifest.unlink()
    os.mkfifo(manifest)
    try:
        stuck = service.start_worker()
        held = wait_for(lambda: _export_row(export_id), lambda e: e.status == "running", timeout=120, interval=0.1)
        stuck.kill()
        stuck.wait()
    finally:
        manifest.unlink()
        manifest.write_bytes(saved)
    service.start_worker()
    done = wait_for(lambda: httpx.get(url, headers=headers).json(), lambda e: e["status"] in ("succeeded", "failed"),
                    timeout=180)
    assert done["status"] == "succeeded", done["error"]
    assert {"merged/config.json", "merged/model.safetensors"} <= {f["name"] for f in done["files"]}
    export = _export_row(export_id)
    assert export.attempt == 2 and export.worker_id != held.worker_id
