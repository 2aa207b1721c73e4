"""GET /v1/fine_tuning/jobs/{id} builds its body from a Core row (app.jobs.service.read_job); it must stay the
body the ORM path gives (job_object of a loaded Job, as the list and the other job endpoints answer), field
for field and in the same order, whatever the job holds."""
from __future__ import annotations

import json

from fastapi.encoders import jsonable_encoder

from app.core.db import session_scope
from app.jobs.estimate import estimated_finish
from app.jobs.schemas import job_object
from app.models import Job
from app.models.base import utcnow
from app.models.job import JobStatus
from tests.api.helpers import auth
from tests.conftest import new_tenant
from tests.overrides import HYPERPARAMETERS, insert_job

JOBS = "/v1/fine_tuning/jobs"


def orm_body(job_id: str) -> dict:
    """What GET job answered before it read a Core row: job_object of the ORM Job through FastAPI's encoder."""
    with session_scope() as db:
        job = db.get(Job, job_id)
        return json.loads(json.dumps(jsonable_encoder(job_object(job, estimated_finish(db, job)))))


def test_get_job_body_matches_the_orm_shape(client, tenant):
    tenant_id, key = tenant
    full = insert_job(tenant_id, status=JobStatus.succeeded, finished_at=utcnow(), validation_file="file-v",
                      suffix="nightly", metadata_={"team": "nlp", "é": "ü"}, fine_tuned_model="ft:tiny-bert:x",
                      trained_tokens=1234, flops=1.5e12, result_metrics={"accuracy": 0.75, "per_class": [1, 2]})
    with session_scope() as db:
        db.get(Job, full).method = {"type": "lora", "lora": {"r": 4, "hyperparameters": HYPERPARAMETERS},
                                    "resources": {"class": "cpu", "processes": 1}}
    failed = insert_job(tenant_id, status=JobStatus.failed, finished_at=utcnow(),
                        error={"code": "disk_full", "message": "No space left.", "param": None})
    running = insert_job(tenant_id, status=JobStatus.running)
    for job_id in (full, failed, running):
        response = client.get(f"{JOBS}/{job_id}", headers=auth(key))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body, expected = response.json(), orm_body(job_id)
        assert body == expected and list(body) == list(expected)
    body = client.get(f"{JOBS}/{full}", headers=auth(key)).json()
    assert body["result_files"] == ["file-" + full.removeprefix("ftjob-")]
    assert body["resources"] == {"class": "cpu", "processes": 1} and "resources" not in body["method"]
    listed = {j["id"]: j for j in client.get(JOBS, headers=auth(key)).json()["data"]}
    assert listed[full] == body


def test_get_job_of_another_tenant_or_unknown_is_404(client, tenant):
    tenant_id, key = tenant
    job_id = insert_job(tenant_id)
    _, other_key = new_tenant()
    for key_used, path in ((other_key, f"{JOBS}/{job_id}"), (key, f"{JOBS}/ftjob-nope")):
        response = client.get(path, headers=auth(key_used))
        assert response.status_code == 404
        assert response.json()["error"]["param"] == "fine_tuning_job_id"
