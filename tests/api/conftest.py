"""Fixtures shared by the API tests: a job a worker has finished, and the app on a real socket."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.api.helpers import auth, classification_rows, jsonl, upload
from tests.conftest import new_tenant


@dataclass(frozen=True)
class TrainedJob:
    tenant_id: str
    key: str
    job_id: str


@pytest.fixture(scope="session")
def trained_job(database, registered_tiny_model) -> TrainedJob:
    """A LoRA job on the tiny random BERT, with a validation file, run to success in this process as a
    worker runs it (checkpoints, metrics events, artifacts, result file, fine-tuned model)."""
    from fastapi.testclient import TestClient

    from app.main import app
    from workers.tasks.run_job import execute

    tenant_id, key = new_tenant()
    with TestClient(app) as client:
        train = upload(client, key, jsonl(classification_rows(24))).json()["id"]
        valid = upload(client, key, jsonl(classification_rows(8))).json()["id"]
        job = client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
            "model": registered_tiny_model, "training_file": train, "validation_file": valid, "seed": 3,
            "method": {"type": "lora", "lora": {"r": 4, "hyperparameters": {
                "n_epochs": 2, "batch_size": 8, "learning_rate": 0.01, "eval_every": 2}}}})
        assert job.status_code == 200, job.text
    assert execute(job.json()["id"]) == "succeeded"
    return TrainedJob(tenant_id, key, job.json()["id"])


@pytest.fixture(scope="session")
def live_url(database) -> Iterator[str]:
    """The app on a real socket, for the official `openai` client."""
    from app.main import app
    from tests.live import serve

    with serve(app) as url:
        yield url
