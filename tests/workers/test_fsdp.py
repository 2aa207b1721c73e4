"""`resources.sharding: "fsdp"`: full fine-tuning with the model, gradients and AdamW state sharded over two
processes (torchrun, gloo on CPU; FSDP2). Paused in the middle and resumed (checkpoints gathered whole and
broadcast back into the shards), its artifact matches the same job run uninterrupted on one process (same
global batch); what fsdp cannot do is a 400 naming resources.sharding. On CPU this tests equality, not speed or
memory."""
from __future__ import annotations

import json

import pytest
import torch
from sqlalchemy import text

from app.core.db import session_scope
from app.models import Job
from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload
from tests.workers.test_multiprocess import still_model  # noqa: F401  (a fixture)
from tests.workers.test_multiprocess_phases import _weights, pause_trigger  # noqa: F401

SUPERVISED = {"type": "supervised", "supervised": {"hyperparameters": {  # 3 steps an epoch, checkpoints at 2, 3, 4, 6
    "n_epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "max_grad_norm": 1.0, "checkpoint_every": 2}}}
FSDP = {"processes": 2, "sharding": "fsdp"}
TOLERANCE = 1e-5  # one process against two: the same sums, added in another order


def test_an_fsdp_job_paused_and_resumed_matches_one_process_uninterrupted(
        client, tenant, still_model, quiet_queue, pause_trigger, monkeypatch):  # noqa: F811
    from app.artifacts.service import local_artifact_dir
    from workers.tasks.run_job import execute

    monkeypatch.setenv("TUNEFORGE_STOP_POLL_INTERVAL", "0")  # the ranks read it: rank 0 sees the pause at once
    key = tenant[1]
    train = upload(client, key, jsonl(classification_rows(20))).json()["id"]  # 20 rows / 8: a 4-row last batch
    valid = upload(client, key, jsonl(classification_rows(8))).json()["id"]  # best weights are kept (and gathered)

    def create(**extra) -> str:
        response = client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
            "model": still_model, "training_file": train, "validation_file": valid, "seed": 3,
            "method": SUPERVISED, **extra})
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def artifact(job_id: str) -> dict[str, torch.Tensor]:
        with session_scope() as db:
            row = db.get(Job, job_id)
            db.expunge(row)
        return _weights(local_artifact_dir(row))

    single = create()
    assert execute(single) == "succeeded"
    one = artifact(single)
    paused = create(resources=FSDP)
    with session_scope() as db:  # a pause once step 2 has checkpointed: in the middle of the first epoch
        db.execute(text("INSERT INTO test_pause_at VALUES (:job, 1)"), {"job": paused})
    assert execute(paused) == "paused"
    assert client.post(f"/v1/fine_tuning/jobs/{paused}/resume", headers=auth(key)).status_code == 200
    assert execute(paused) == "succeeded"
    two = artifact(paused)
    assert two.keys() == one.keys() and one
    difference = max((two[k] - one[k]).abs().max().item() for k in one)
    print(f"fsdp on 2 processes, paused and resumed, against 1 process: max |difference| {difference:.1e}")
    assert difference < TOLERANCE

    with session_scope() as db:
        row = db.get(Job, paused)
        config = json.loads((local_artifact_dir(row) / "model" / "config.json").read_text())
        messages = db.execute(text("SELECT message FROM job_events WHERE job_id = :job"),
                              {"job": paused}).scalars().all()
    assert config["architectures"] == ["BertForSequenceClassification"]  # not FSDP's subclass
    assert any("sharded (FSDP)" in m for m in messages)
    assert any(m.startswith("Job paused") for m in messages)
    assert any(m.startswith("Resumed from checkpoint") for m in messages)


def _create(client, key: str, model: str, method: dict, resources: dict):
    train = upload(client, key, jsonl(classification_rows())).json()["id"]
    return client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
        "model": model, "training_file": train, "method": method, "resources": resources})


@pytest.mark.parametrize("method, resources, words", [
    (SUPERVISED, {"sharding": "fsdp"}, "ask for gpus >= 2"),
    (SUPERVISED, {"processes": 1, "sharding": "fsdp"}, "ask for gpus >= 2"),
    ({"type": "lora"}, FSDP, "method lora trains a few weights"),
    ({"type": "supervised", "supervised": {"stability": {"recipe": "mosbach"}}}, FSDP, "method.supervised.stability"),
    ({"type": "supervised", "supervised": {"aux_mlm_weight": 0.5}}, FSDP, "method.supervised.aux_mlm_weight"),
    ({"type": "supervised", "supervised": {"hyperparameters": {"precision": "fp16"}}}, FSDP,
     "hyperparameters.precision"),
    (SUPERVISED, {"processes": 2, "sharding": "zero3"}, "'none' or 'fsdp'"),
])
def test_what_fsdp_cannot_do_is_a_400_naming_the_field(client, tenant, registered_tiny_model, quiet_queue,
                                                       method, resources, words):
    response = _create(client, tenant[1], registered_tiny_model, method, resources)
    assert_error(response, 400, param="resources.sharding")
    assert words in response.json()["error"]["message"]


def test_an_fsdp_job_stores_its_sharding(client, tenant, registered_tiny_model, quiet_queue):
    job = _create(client, tenant[1], registered_tiny_model, SUPERVISED, FSDP).json()
    assert job["resources"]["sharding"] == "fsdp" and job["resources"]["processes"] == 2
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=auth(tenant[1])).json()["data"]
    assert any(e["message"].startswith("Resources: CPU, 2 processes, FSDP") for e in events)
    plain = _create(client, tenant[1], registered_tiny_model, SUPERVISED, {"processes": 2}).json()
    assert "sharding" not in plain["resources"]
