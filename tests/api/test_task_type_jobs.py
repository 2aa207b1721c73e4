"""Jobs on NER, regression and multi-label files over HTTP (issue 17): the task type is inferred and
said in the job's events; bad files and methods that cannot train the type are 400s naming the line
or the field; a job run as a worker runs it predicts per type over POST /v1/predictions."""
from __future__ import annotations

import pytest

from tests.api.helpers import assert_error, auth, jsonl, upload
from tests.api.test_jobs import _jobs, create
from tests.task_rows import multi_label_rows, ner_rows, regression_rows

ROWS = {"token_classification": ner_rows, "regression": regression_rows, "multi_label_classification": multi_label_rows}


@pytest.mark.parametrize("task", list(ROWS))
def test_a_job_states_the_task_type_it_inferred(client, tenant, registered_tiny_model, task):
    _, key = tenant
    train = upload(client, key, jsonl(ROWS[task](12, 1))).json()["id"]
    response = create(client, key, model=registered_tiny_model, training_file=train, method={"type": "lora"})
    assert response.status_code == 200, response.text
    events = client.get(f"/v1/fine_tuning/jobs/{response.json()['id']}/events", headers=auth(key)).json()["data"]
    validated = next(e for e in events if e["message"].startswith("Files validated"))
    assert validated["message"].startswith(f"Files validated: {task}") and validated["data"]["task"] == task


@pytest.mark.parametrize("content, fragment", [
    (b'{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"tokens": ["c"], "tags": ["B-PER"]}\n',
     "line 3: is a token-classification row"),
    (b'{"tokens": ["Ada", "Lovelace"], "tags": ["B-PER"]}\n', "line 1: has 2 tokens but 1 tags"),
    (b'{"text": "a", "label": 0.5}\n{"text": "b", "label": NaN}\n', 'line 2: "label" is nan'),
    (b'{"text": "a", "label": 0.5}\n{"text": "b", "label": -Infinity}\n', "must be finite"),
    (b'{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": [["y"]]}\n', 'line 2: "labels" must be an array'),
    (b'{"tokens": ["a"], "tags": ["PERSON"]}\n', "is not a BIO tag"),
])
def test_bad_task_files_are_400_naming_the_line(client, tenant, registered_tiny_model, content, fragment):
    tenant_id, key = tenant
    train = upload(client, key, content).json()["id"]
    response = create(client, key, model=registered_tiny_model, training_file=train)
    assert_error(response, 400, fragment, param="training_file")
    assert _jobs(tenant_id) == 0


@pytest.mark.parametrize("method, task", [("cloze", "regression"), ("cloze", "token_classification"),
                                          ("cloze", "multi_label_classification"),
                                          ("prompt_tuning", "token_classification")])
def test_a_method_that_cannot_train_the_type_is_400(client, tenant, registered_tiny_model, method, task):
    tenant_id, key = tenant
    train = upload(client, key, jsonl(ROWS[task](12, 1))).json()["id"]
    settings = {"num_virtual_tokens": 4, "hyperparameters": {"max_length": 64}} if method == "prompt_tuning" else {}
    response = create(client, key, model=registered_tiny_model, training_file=train,
                      method={"type": method, method: settings})
    assert_error(response, 400, f"holds {task} rows, which {method} cannot train", "methods that can: ",
                 param="method.type")
    assert _jobs(tenant_id) == 0


def test_validation_file_of_another_type_is_400(client, tenant, registered_tiny_model):
    tenant_id, key = tenant
    train = upload(client, key, jsonl(regression_rows(12))).json()["id"]
    valid = upload(client, key, jsonl(multi_label_rows(4))).json()["id"]
    response = create(client, key, model=registered_tiny_model, training_file=train, validation_file=valid)
    assert_error(response, 400, "validation_file holds multi_label_classification rows", param="validation_file")
    assert _jobs(tenant_id) == 0


def test_multi_label_threshold_is_checked(client, tenant, registered_tiny_model):
    _, key = tenant
    train = upload(client, key, jsonl(multi_label_rows(12))).json()["id"]
    response = create(client, key, model=registered_tiny_model, training_file=train,
                      method={"type": "supervised", "supervised": {"multi_label_threshold": 1.5}})
    assert_error(response, 400, "must be 'auto' or within (0, 1), got 1.5", param="method.supervised.multi_label_threshold")


def _run(client, key, model: str, task: str, method: str, **settings) -> str:
    from workers.tasks.run_job import execute

    train = upload(client, key, jsonl(ROWS[task](64, 1))).json()["id"]
    valid = upload(client, key, jsonl(ROWS[task](16, 2))).json()["id"]
    job = create(client, key, model=model, training_file=train, validation_file=valid, seed=1, method={
        "type": method, method: {**settings, "hyperparameters": {"n_epochs": 8, "batch_size": 8, "learning_rate": 3e-3}}})
    assert job.status_code == 200, job.text
    assert execute(job.json()["id"]) == "succeeded"
    return job.json()["id"]


def _predict(client, key, model: str, inputs: list, **extra) -> list[dict]:
    response = client.post("/v1/predictions", headers=auth(key), json={"model": model, "input": inputs, **extra})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_predictions_answer_per_task_type(client, tenant, registered_tiny_model):
    """A job per type, run as the worker runs it, then predictions over HTTP in each type's shape."""
    _, key = tenant
    ner = _run(client, key, registered_tiny_model, "token_classification", "supervised")
    [row] = _predict(client, key, ner, ["the good table was bad"])
    assert set(row) == {"object", "index", "tags", "entities"} and len(row["tags"]) == 5
    for entity in row["entities"]:
        assert "the good table was bad"[entity["start"]:entity["end"]] == entity["text"]
    regression = _run(client, key, registered_tiny_model, "regression", "lora", r=4)
    rows = _predict(client, key, regression, ["good great", {"text": "bad awful"}])
    assert all(set(r) == {"object", "index", "value"} and isinstance(r["value"], float) for r in rows)
    multi = _run(client, key, registered_tiny_model, "multi_label_classification", "bitfit")
    [row] = _predict(client, key, multi, ["good table"])
    assert set(row["probabilities"]) == {"neg", "obj", "pos"} and set(row["labels"]) <= {"neg", "obj", "pos"}
    assert set(_predict(client, key, multi, ["good table"], threshold=0.01)[0]["labels"]) == {"neg", "obj", "pos"}


@pytest.mark.parametrize("task, stability, field, fragment", [
    ("regression", {"regularizer": {"type": "r3f"}}, "stability.regularizer", "one regression output"),
    ("regression", {"early_stopping": {"patience": 2}}, "stability.early_stopping.metric", "accuracy is not measured"),
    ("token_classification", {"early_stopping": {"patience": 2, "metric": "macro_f1"}},
     "stability.early_stopping.metric", "macro_f1 is not measured"),
])
def test_stability_options_the_task_type_cannot_take_are_400(client, tenant, registered_tiny_model, task, stability,
                                                             field, fragment):
    tenant_id, key = tenant
    train = upload(client, key, jsonl(ROWS[task](12, 1))).json()["id"]
    valid = upload(client, key, jsonl(ROWS[task](4, 2))).json()["id"]
    response = create(client, key, model=registered_tiny_model, training_file=train, validation_file=valid,
                      method={"type": "supervised", "supervised": {"stability": stability}})
    assert_error(response, 400, fragment, param=f"method.supervised.{field}")
    assert _jobs(tenant_id) == 0
