"""Checkpoints in the object store (moto's real S3 server, through s3fs): a job paused on one host resumes on
another host with an empty checkpoint dir to the artifact an uninterrupted run makes; an upload cut off
before its snapshot manifest is never used; the store keeps what the disk keeps."""
from __future__ import annotations

import json
import uuid

import httpx
import pytest
import torch

from app.core.object_store import ObjectStore
from app.jobs import checkpoint_store
from app.training.base import TrainingError
from app.training.checkpoints import latest_complete_checkpoint, save_checkpoint
from tests.api.helpers import jsonl
from tests.conftest import new_tenant, quiesce_jobs
from tests.e2e.conftest import wait_for
from tests.harness import Service
from tests.storage.test_s3 import BUCKET, FINAL, PREFIX, auth, host_env, objects, s3, upload  # noqa: F401 - s3: fixture
from tests.tiny_models import make_classification_rows, make_tiny_bert
from workers.checkpoint_mirror import CheckpointMirror

METHOD = {"type": "lora", "lora": {"r": 4, "hyperparameters": {
    "n_epochs": 1, "batch_size": 4, "checkpoint_every": 30, "learning_rate": 1e-3, "max_length": 16}}}


class Messages:
    def __init__(self):
        self.texts: list[str] = []

    def message(self, text: str, level: str = "info", data=None) -> None:
        self.texts.append(text)


@pytest.fixture
def store(s3) -> ObjectStore:
    fs, _ = s3
    return ObjectStore(f"s3://{BUCKET}/unit", fs, f"{BUCKET}/unit-{uuid.uuid4().hex}", remote=True)


def _train_step(root, step: int, model: torch.nn.Linear) -> None:
    """A real checkpoint after one more optimizer step (save_checkpoint keeps the newest 2 on disk)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    save_checkpoint(root, step, model, optimizer, scheduler, {"epoch": 0, "batch_in_epoch": step})


def _blobs(store: ObjectStore, job: str) -> set[str]:
    return {o.key.rsplit("/", 1)[-1] for o in store.list(f"checkpoints/{job}/blobs")}


def test_an_upload_cut_off_before_its_manifest_is_ignored(store, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model, host_a = torch.nn.Linear(4, 2), tmp_path / "host-a" / "job"
    mirror = CheckpointMirror(store, "job", host_a)
    for step in (1, 2):
        _train_step(host_a, step, model)
        mirror.snapshot(step)
    mirror.flush()
    stored_step_2 = {p.name: p.read_bytes() for p in (host_a / "step-00000002").iterdir()}

    _train_step(host_a, 3, model)
    real_put, puts = store.put_file, []

    def cut_after_one(source, key):  # the connection drops after the first new file of step 3
        if puts:
            raise ConnectionResetError("connection reset by peer")
        puts.append(key)
        real_put(source, key)
    monkeypatch.setattr(store, "put_file", cut_after_one)
    mirror.snapshot(3)
    with pytest.raises(TrainingError) as failed:
        mirror.flush()
    assert failed.value.code == "storage_unavailable" and "step 3" in failed.value.message
    mirror.close()
    keys = checkpoint_store.snapshot_keys(store, "job")
    assert [k.rsplit("/", 1)[-1] for k in keys] == ["00000002.json", "00000001.json"]  # no manifest for step 3
    assert puts and puts[0].rsplit("/", 1)[-1] in _blobs(store, "job")  # its bytes are there, unlisted

    host_b, sink = tmp_path / "host-b" / "job", Messages()
    restored = CheckpointMirror(store, "job", host_b).restore(sink)
    assert (restored.seq, restored.step) == (2, 2)
    assert latest_complete_checkpoint(host_b).name == "step-00000002"
    assert {p.name: p.read_bytes() for p in (host_b / "step-00000002").iterdir()} == stored_step_2
    assert sink.texts == ["Checkpoint at step 2 restored from the object store (this host had none as new)"]
    assert CheckpointMirror(store, "job", host_b).restore(sink) is None  # as new as the store: kept as it is

    monkeypatch.setattr(store, "put_file", real_put)  # host B trains on and stores; the store prunes as the disk
    mirror_b = CheckpointMirror(store, "job", host_b)
    for step in (3, 4):
        _train_step(host_b, step, model)
        mirror_b.snapshot(step)
    mirror_b.flush()
    mirror_b.close()
    kept = [checkpoint_store.read_snapshot(store, k) for k in checkpoint_store.snapshot_keys(store, "job")]
    assert [(s.seq, s.step) for s in kept] == [(4, 4), (3, 3)]
    assert _blobs(store, "job") == {sha for s in kept for _, _, sha in s.files}  # the cut-off upload's too
    assert {name.split("/")[0] for name, _, _ in kept[0].files} == {"step-00000003", "step-00000004"}

    assert CheckpointMirror(store, "job", host_a).restore(sink) is not None  # host A's dir was older: replaced
    assert latest_complete_checkpoint(host_a).name == "step-00000004"
    mirror_b.discard()
    assert store.list("checkpoints/job") == []


def _adapter(url: str, key: str, job_id: str) -> dict:
    listing = httpx.get(f"{url}/v1/fine_tuning/jobs/{job_id}/artifacts", headers=auth(key)).json()["data"]
    name = next(a["name"] for a in listing if a["name"].endswith("adapter_model.safetensors"))
    body = httpx.get(f"{url}/v1/fine_tuning/jobs/{job_id}/artifacts/{name}", headers=auth(key)).content
    from safetensors.torch import load

    return load(body)


def test_a_job_paused_on_one_host_resumes_on_another_from_the_stored_checkpoint(s3, database, tmp_path):
    fs, credentials = s3
    quiesce_jobs()
    api = Service(host_env(credentials, tmp_path / "api-host"))
    host_a = Service(host_env(credentials, tmp_path / "host-a"), url=api.url)
    host_b = Service(host_env(credentials, tmp_path / "host-b"), url=api.url)
    try:
        api.start_api()
        host_a.start_worker()
        _, key = new_tenant()
        api.cli("models", "add", "ckpt-tiny", str(make_tiny_bert(tmp_path / "ckpt-tiny", seed=5)))
        file_id = upload(api.url, key, jsonl(make_classification_rows(1200, seed=11)))["id"]

        def submit(suffix: str) -> str:  # the suffix: an identical body moments later is a retry, the same job
            job = httpx.post(f"{api.url}/v1/fine_tuning/jobs", headers=auth(key), json={
                "model": "ckpt-tiny", "training_file": file_id, "seed": 21, "method": METHOD, "suffix": suffix})
            assert job.status_code == 200, job.text
            return job.json()["id"]

        def job(job_id: str) -> dict:
            return httpx.get(f"{api.url}/v1/fine_tuning/jobs/{job_id}", headers=auth(key)).json()

        reference = submit("straight")
        assert wait_for(lambda: job(reference), lambda j: j["status"] in FINAL, timeout=300)["status"] == "succeeded"

        job_id = submit("moved")
        def stored_or_over() -> bool:
            return bool(objects(fs, f"checkpoints/{job_id}/snapshots")) or job(job_id)["status"] in FINAL
        wait_for(stored_or_over, bool, timeout=180, interval=0.05)
        assert job(job_id)["status"] == "running"
        assert httpx.post(f"{api.url}/v1/fine_tuning/jobs/{job_id}/pause", headers=auth(key)).status_code == 200
        assert wait_for(lambda: job(job_id), lambda j: j["status"] in ("paused", *FINAL), timeout=120)["status"] == "paused"
        host_a.stop()  # the host is gone: its disk (and checkpoint dir) with it
        newest = max(objects(fs, f"checkpoints/{job_id}/snapshots"))
        paused_step = json.loads(fs.cat_file(f"{BUCKET}/{PREFIX}/{newest}"))["step"]

        host_b.start_worker()
        assert httpx.post(f"{api.url}/v1/fine_tuning/jobs/{job_id}/resume", headers=auth(key)).status_code == 200
        done = wait_for(lambda: job(job_id), lambda j: j["status"] in FINAL, timeout=300)
        assert done["status"] == "succeeded", done
        events = httpx.get(f"{api.url}/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100},
                           headers=auth(key)).json()["data"]
        messages = [e["message"] for e in events]
        assert f"Checkpoint at step {paused_step} restored from the object store (this host had none as new)" in messages
        assert any(m.startswith(f"Resumed from checkpoint at step {paused_step}") for m in messages)

        a, b = _adapter(api.url, key, reference), _adapter(api.url, key, job_id)
        assert a.keys() == b.keys()
        for name in a:
            assert (a[name] - b[name]).abs().max().item() < 1e-5, name
        assert objects(fs, f"checkpoints/{job_id}") == {}  # succeeded: nothing resumes it, nothing kept
        assert not (tmp_path / "host-b" / "checkpoints" / job_id).exists()
    finally:
        for service in (host_b, host_a, api):
            service.stop()
