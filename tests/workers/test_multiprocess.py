"""One job on two processes (torchrun, gloo on CPU) through the worker's own path: its artifact matches
the same job on one process (same global batch), and the job says it ran data parallel."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from app.core.db import session_scope
from app.models import Job
from tests.api.helpers import auth, classification_rows, jsonl, upload


@pytest.fixture(scope="module")
def still_model(database, tmp_path_factory) -> str:
    """The tiny BERT without dropout: two processes draw other dropout masks than one, by design."""
    from app.base_models.service import register
    from tests.tiny_models import make_tiny_bert

    path = make_tiny_bert(tmp_path_factory.mktemp("tiny-still"))
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.0,
                                                  "attention_probs_dropout_prob": 0.0}))
    with session_scope() as db:
        register(db, "tiny-bert-still", path)
    return "tiny-bert-still"


def test_two_process_job_matches_one_process(client, tenant, still_model, quiet_queue):
    from app.artifacts.service import local_artifact_dir
    from workers.tasks.run_job import execute

    key = tenant[1]
    train = upload(client, key, jsonl(classification_rows(20))).json()["id"]  # 20 rows / 8: a 4-row last batch
    method = {"type": "lora", "lora": {"r": 4, "lora_dropout": 0.0,
                                       "hyperparameters": {"n_epochs": 2, "batch_size": 8, "learning_rate": 1e-2}}}

    def run(**extra) -> tuple[Job, dict]:
        job = client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
            "model": still_model, "training_file": train, "seed": 3, "method": method, **extra}).json()
        assert execute(job["id"]) == "succeeded"
        with session_scope() as db:
            row = db.get(Job, job["id"])
            db.expunge(row)
        return row, load_file(local_artifact_dir(row) / "adapter" / "adapter_model.safetensors")

    parallel, two = run(resources={"processes": 2})
    single, one = run()
    assert two.keys() == one.keys()
    assert max((two[k] - one[k]).abs().max().item() for k in one) < 1e-5
    assert parallel.trained_tokens == single.trained_tokens
    events = client.get(f"/v1/fine_tuning/jobs/{parallel.id}/events", headers=auth(key)).json()["data"]
    [start] = [e for e in events if e["message"].startswith("Training ") and "parameters for" in e["message"]]
    assert "data parallel over 2 processes" in start["message"] and start["data"]["processes"] == 2
    assert sum(e["message"].startswith("Checkpoint saved") for e in events) == 2  # rank 0 alone writes

