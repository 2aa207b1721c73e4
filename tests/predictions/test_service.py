"""Predictions from a real `tuneforge api` process: two LoRA jobs and a BitFit job trained on the tiny BERT by
a real worker, asked for at once over HTTP, each answering what its downloaded artifact answers alone."""
from __future__ import annotations

import math
import threading

import httpx

from app.artifacts.service import job_artifact_dir
from app.core.db import session_scope
from app.models import Job
from tests.api.helpers import classification_rows
from tests.e2e.conftest import openai_client, service  # noqa: F401 - fixtures
from tests.e2e.test_service import run_job
from tests.predictions.conftest import TEXTS, reference

HYPER = {"n_epochs": 1, "batch_size": 8, "max_length": 16, "learning_rate": 0.02}
METHODS = {
    "lora": {"type": "lora", "lora": {"r": 4, "hyperparameters": HYPER}},
    "lora_wide": {"type": "lora", "lora": {"r": 8, "target_modules": ["query", "key", "value"], "hyperparameters": HYPER}},
    "bitfit": {"type": "bitfit", "bitfit": {"hyperparameters": HYPER}},
}


def test_the_api_process_serves_jobs_its_worker_trained(service, openai_client, registered_tiny_model,  # noqa: F811
                                                        base_ref):
    jobs = {name: run_job(openai_client, registered_tiny_model, method, rows=classification_rows(16),
                          valid_rows=False) for name, method in METHODS.items()}
    assert all(job.status == "succeeded" for job in jobs.values()), {n: j.error for n, j in jobs.items()}
    answers: dict[str, dict] = {}

    def ask(name: str) -> None:
        response = httpx.post(f"{service.url}/v1/predictions", timeout=120, json={
            "model": jobs[name].fine_tuned_model, "input": TEXTS},
            headers={"Authorization": f"Bearer {openai_client.api_key}"})
        answers[name] = response.json() if response.status_code == 200 else {"error": response.text}

    threads = [threading.Thread(target=ask, args=(name,)) for name in METHODS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, job in jobs.items():
        with session_scope() as db:
            artifact = job_artifact_dir(db.get(Job, job.id))
        want = reference(artifact, base_ref, TEXTS)
        got = answers[name]
        assert got.get("model") == job.fine_tuned_model, got
        for row, logits in zip(got["data"], want, strict=True):
            exps = [math.exp(x - max(logits)) for x in logits]
            assert max(abs(p - e / sum(exps)) for p, e in zip(row["probabilities"].values(), exps)) < 1e-5
