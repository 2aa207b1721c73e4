"""One job per task type through the real service (`tuneforge api` + `tuneforge worker` processes, the
official `openai` client): NER, regression and multi-label files train, the job's events name the task
type, and POST /v1/predictions answers in that type's shape."""
from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_service import run_job
from tests.task_rows import multi_label_rows, ner_rows, regression_rows

CASES = {
    "token_classification": (ner_rows, {"type": "supervised"}, ["the good table was bad"], {"tags", "entities"}),
    "regression": (regression_rows, {"type": "lora", "lora": {"r": 4}}, ["good great", "bad awful"], {"value"}),
    "multi_label_classification": (multi_label_rows, {"type": "bitfit"}, ["good table"], {"labels", "probabilities"}),
}


@pytest.mark.parametrize("task", list(CASES))
def test_each_task_type_trains_and_predicts_through_the_worker(service, openai_client, task):
    rows, method, inputs, fields = CASES[task]
    method = {**method, method["type"]: {**method.get(method["type"], {}),
                                         "hyperparameters": {"n_epochs": 3, "batch_size": 8, "learning_rate": 3e-3}}}
    job = run_job(openai_client, "tiny-bert", method, rows=rows(32, 1), valid_rows=rows(8, 2))
    assert job.status == "succeeded", job.error
    events = [e.message for e in openai_client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert any(m.startswith(f"Files validated: {task}") for m in events)
    assert any(m.startswith("Task: ") for m in events)
    response = httpx.post(f"{service.url}/v1/predictions", headers={"Authorization": f"Bearer {openai_client.api_key}"},
                          json={"model": job.fine_tuned_model, "input": inputs}, timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == len(inputs) and all(set(row) == {"object", "index", *fields} for row in data)
