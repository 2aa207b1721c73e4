"""Chains (STILTs) at submission: `model` may name the tenant's succeeded job (its fine_tuned_model or id);
another tenant's is a 404 like any unknown model, a failed/cancelled/running one a 400 saying why, with
nothing stored. The source is `trained_job` (a real LoRA job run as a worker runs it); the other sources are
rows in the real PostgreSQL in the state named."""
from __future__ import annotations

import pytest

from app.core.db import session_scope
from app.core.ids import new_id
from app.models import Job
from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload
from tests.api.test_jobs import _jobs, create
from tests.conftest import new_tenant
from tests.e2e.conftest import wait_for


def _job_row(tenant_id: str, status: str, error: dict | None = None) -> str:
    with session_scope() as db:
        job = Job(id=new_id("ftjob-"), tenant_id=tenant_id, model="tiny-bert", status=status, training_file="file-x",
                  method={"type": "supervised", "supervised": {}}, seed=0, attempt=1, error=error)
        db.add(job)
        db.flush()
        return job.id


def _run(client, key: str, job_id: str) -> dict:
    """Run a queued job as a worker does, in this process (or wait for this session's worker that claimed it)."""
    from workers.tasks.run_job import execute

    if execute(job_id) == "skipped":
        wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(key)).json(),
                 lambda job: job["status"] not in ("queued", "running"), timeout=120)
    return client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(key)).json()


def _source(client, trained_job) -> dict:
    return client.get(f"/v1/fine_tuning/jobs/{trained_job.job_id}", headers=auth(trained_job.key)).json()


@pytest.mark.parametrize("by", ["fine_tuned_model", "id"])
def test_a_succeeded_job_of_the_tenant_starts_a_new_job(by, client, trained_job):
    source = _source(client, trained_job)
    train = upload(client, trained_job.key, jsonl(classification_rows(16, labels=("a", "b", "c")))).json()["id"]
    response = create(client, trained_job.key, model=source[by], training_file=train,
                      method={"type": "bitfit", "bitfit": {"hyperparameters": {"n_epochs": 1}}})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == trained_job.job_id  # stored as the source's id, whatever named it


def test_a_chained_job_runs_from_the_sources_encoder_and_records_its_lineage(client, trained_job):
    """The worker's path, in this process: the encoder is materialized and registered once as
    encoder:<source>, the job's events and manifest name the lineage, and a second chain reuses it."""
    from app.artifacts.service import job_artifact_dir
    from app.models import BaseModel
    from app.training.artifacts import read_manifest

    train = upload(client, trained_job.key, jsonl(classification_rows(16, labels=("x", "y")))).json()["id"]
    ids = []
    for _ in range(2):
        response = create(client, trained_job.key, model=trained_job.job_id, training_file=train, seed=1,
                          method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
        assert _run(client, trained_job.key, ids[-1])["status"] == "succeeded"
    with session_scope() as db:
        encoder = db.get(BaseModel, f"encoder:{trained_job.job_id}")
        jobs = [db.get(Job, i) for i in ids]
        manifests = [read_manifest(job_artifact_dir(j)) for j in jobs]
        assert encoder.tenant_id == trained_job.tenant_id and encoder.owned_by == trained_job.tenant_id
    for manifest in manifests:
        assert manifest["base_model"] == {"id": encoder.id, "sha256": encoder.sha256}
        assert [s.get("job") for s in manifest["lineage"]] == [None, trained_job.job_id]
        assert manifest["lineage"][0]["model"] == "tiny-bert" and manifest["lineage"][1]["method"] == "lora"
        assert manifest["labels"] == ["x", "y"]
    events = client.get(f"/v1/fine_tuning/jobs/{ids[1]}/events?limit=100", headers=auth(trained_job.key)).json()
    started = [e for e in events["data"] if e["message"].startswith(f"Starting from job {trained_job.job_id}")]
    assert len(started) == 1 and "tiny-bert → " in started[0]["message"]
    predicted = client.post("/v1/predictions", headers=auth(trained_job.key),
                            json={"model": ids[0], "input": ["good great", "awful bad"]})
    assert predicted.status_code == 200, predicted.text
    # a third link: its encoder is materialized over encoder:<source>, found as a registered base
    third = create(client, trained_job.key, model=ids[0], training_file=train, seed=2,
                   method={"type": "bitfit", "bitfit": {"hyperparameters": {"n_epochs": 1}}}).json()
    assert _run(client, trained_job.key, third["id"])["status"] == "succeeded"
    with session_scope() as db:
        lineage = read_manifest(job_artifact_dir(db.get(Job, third["id"])))["lineage"]
    assert [s.get("job") for s in lineage] == [None, trained_job.job_id, ids[0]]
    assert [s["model"] for s in lineage] == ["tiny-bert", encoder.id, f"encoder:{ids[0]}"]
    predicted = client.post("/v1/predictions", headers=auth(trained_job.key),
                            json={"model": third["id"], "input": ["good great"]})
    assert predicted.status_code == 200, predicted.text


def test_another_tenants_job_is_not_found(client, trained_job):
    source = _source(client, trained_job)
    _, key = new_tenant()
    train = upload(client, key, jsonl(classification_rows())).json()["id"]
    for name in (source["fine_tuned_model"], source["id"]):
        assert_error(create(client, key, model=name, training_file=train), 404, "Unknown base model", param="model")


@pytest.mark.parametrize(("status", "fragment"), [
    ("failed", "it failed (training loss became nan"), ("cancelled", "it was cancelled"),
    ("running", "it is running; wait until it succeeds"), ("queued", "it is queued; wait")])
def test_a_job_that_did_not_succeed_is_a_400_saying_why(status, fragment, client, tenant):
    tenant_id, key = tenant
    error = {"code": "nan_loss", "message": "Training loss became nan at step 3"} if status == "failed" else None
    source = _job_row(tenant_id, status, error)
    train = upload(client, key, jsonl(classification_rows())).json()["id"]
    before = _jobs(tenant_id)
    assert_error(create(client, key, model=source, training_file=train), 400, "did not succeed", fragment,
                 param="model")
    assert _jobs(tenant_id) == before


def test_a_succeeded_job_without_its_artifact_is_a_400(client, tenant):
    tenant_id, key = tenant
    source = _job_row(tenant_id, "succeeded")
    train = upload(client, key, jsonl(classification_rows())).json()["id"]
    assert_error(create(client, key, model=source, training_file=train), 400, "artifact is missing", param="model")


# multitask (Muppet): every task file is checked like a training file at submission


def _multitask(client, key, tasks: list[dict], **settings):
    train = upload(client, key, jsonl(classification_rows())).json()["id"]
    return create(client, key, model="tiny-bert", training_file=train,
                  method={"type": "multitask", "multitask": {"tasks": tasks, **settings}})


def test_a_multitask_job_with_its_task_files_is_queued(client, tenant, registered_tiny_model):
    _, key = tenant
    files = [upload(client, key, jsonl(classification_rows(labels=labels))).json()["id"]
             for labels in (("a", "b"), ("x", "y", "z"), ("x", "y"))]
    response = _multitask(client, key, [{"name": "ab", "training_file": files[0]},
                                        {"name": "xyz", "training_file": files[1], "validation_file": files[2]}],
                          sampling="temperature", temperature=3, then={"type": "lora", "lora": {"r": 4}})
    assert response.status_code == 200, response.text
    stored = response.json()["method"]["multitask"]
    assert stored["tasks"][1] == {"name": "xyz", "training_file": files[1], "validation_file": files[2]}
    assert stored["then"]["lora"]["hyperparameters"]["n_epochs"] >= 1  # resolved at submission


@pytest.mark.parametrize(("settings", "param", "fragment"), [
    ({"tasks": "one"}, "method.multitask.tasks", "at least two tasks"),
    ({"tasks": "same-names"}, "method.multitask.tasks", "must differ"),
    ({"tasks": "two", "temperature": 3}, "method.multitask", 'only with sampling: "temperature"'),
    ({"tasks": "two", "then": {"type": "adaptive", "adaptive": {"tapt": True}}}, "method.multitask.then",
     "task method"),
    ({"tasks": "two", "then": {"type": "adapter", "adapter": {"stack": ["ftjob-x"]}}}, "method.multitask.then",
     "cannot stack adapters"),
])
def test_bad_multitask_settings_are_400s_naming_the_field(settings, param, fragment, client, tenant,
                                                        registered_tiny_model):
    tenant_id, key = tenant
    file_id = upload(client, key, jsonl(classification_rows())).json()["id"]
    task = {"name": "a", "training_file": file_id}
    tasks = {"one": [task], "same-names": [task, task], "two": [task, {**task, "name": "b"}]}[settings.pop("tasks")]
    before = _jobs(tenant_id)
    assert_error(_multitask(client, key, tasks, **settings), 400, fragment, param=param)
    assert _jobs(tenant_id) == before


def test_a_task_file_that_is_not_labelled_rows_is_a_400_naming_the_task(client, tenant, registered_tiny_model):
    _, key = tenant
    good = upload(client, key, jsonl(classification_rows())).json()["id"]
    corpus = upload(client, key, jsonl([{"text": "no label here"}] * 4)).json()["id"]
    response = _multitask(client, key, [{"name": "a", "training_file": good}, {"name": "b", "training_file": corpus}])
    assert_error(response, 400, "not a valid training file", "label", param="method.multitask.tasks.1.training_file")


def test_a_token_classification_task_is_a_400_saying_to_train_it_in_then(client, tenant, registered_tiny_model):
    _, key = tenant
    good = upload(client, key, jsonl(classification_rows())).json()["id"]
    ner = upload(client, key, jsonl([{"tokens": ["Paris", "is", "big"], "tags": ["B-LOC", "O", "O"]}] * 4)).json()["id"]
    response = _multitask(client, key, [{"name": "a", "training_file": good}, {"name": "ner", "training_file": ner}])
    assert_error(response, 400, "token_classification", "then", param="method.multitask.tasks.1.training_file")
    scores = upload(client, key, jsonl([{"text": f"text {i}", "label": i / 7} for i in range(8)])).json()["id"]
    mixed = _multitask(client, key, [{"name": "a", "training_file": good}, {"name": "score", "training_file": scores}])
    assert mixed.status_code == 200, mixed.text  # regression (and multi-label) tasks mix


def test_another_tenants_task_file_is_not_found(client, tenant, registered_tiny_model):
    _, key = tenant
    _, other = new_tenant()
    theirs = upload(client, other, jsonl(classification_rows())).json()["id"]
    mine = upload(client, key, jsonl(classification_rows())).json()["id"]
    response = _multitask(client, key, [{"name": "a", "training_file": mine},
                                        {"name": "b", "training_file": mine, "validation_file": theirs}])
    assert_error(response, 404, param="method.multitask.tasks.1.validation_file")


def test_naming_an_encoder_only_job_starts_from_its_registered_encoder(client, tenant, registered_tiny_model):
    """A multitask job without then produced an encoder, no task head: naming the job is naming its model."""
    _, key = tenant
    files = [upload(client, key, jsonl(classification_rows(16, labels=labels))).json()["id"]
             for labels in (("a", "b"), ("x", "y", "z"))]
    tasks = [{"name": "ab", "training_file": files[0]}, {"name": "xyz", "training_file": files[1]}]
    job = create(client, key, model=registered_tiny_model, training_file=files[0], method={
        "type": "multitask", "multitask": {"tasks": tasks, "hyperparameters": {"n_epochs": 1, "batch_size": 8}}}).json()
    done = _run(client, key, job["id"])
    assert done["status"] == "succeeded", done["error"]
    for name in (job["id"], done["fine_tuned_model"]):
        response = create(client, key, model=name, training_file=files[1], method={"type": "lora"})
        assert response.status_code == 200, response.text
        assert response.json()["model"] == f"multitask:{job['id']}"
