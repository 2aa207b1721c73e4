"""Every object the API returns is exactly the `openai` package's type for it (strictly: see
tests/api/openai_wire.py), plus only the extensions README "OpenAI compatibility" documents."""
from __future__ import annotations

from typing import Any

import pytest
from openai.pagination import SyncCursorPage, SyncPage
from openai.types import FileDeleted, FileObject, Model
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from app.core.db import session_scope
from app.jobs.events import record_event
from app.models import JobEvent
from app.training.methods import parse_method
from tests.api.helpers import auth, classification_rows, jsonl, upload
from tests.api.openai_wire import assert_openai

JOBS = "/v1/fine_tuning/jobs"
OPENAI_METHODS = ("supervised", "dpo", "reinforcement")
# our extensions, as documented in README "OpenAI compatibility"
JOB_EXTENSIONS = ("suffix", "attempt", "training_flops", "metrics", "resources", "method.supervised.*",
                  "method.supervised.hyperparameters.*")
OUR_STATUSES = ("pausing", "paused")
FILE_EXTENSIONS = ("sha256",)
CHECKPOINT_EXTENSIONS = ("metrics.eval_*",)
LIST_ENVELOPE = ("object", "first_id", "last_id")  # OpenAI sends them; the client's page type omits them


def assert_job(job: dict[str, Any]) -> None:
    """A FineTuningJob; our statuses and methods are checked as such, the rest as OpenAI's."""
    parse_method(job["method"], resolved=True)  # every key of `method` is a setting of a registered method
    openai_view = dict(job)
    if job["status"] in OUR_STATUSES:
        openai_view["status"] = "queued"  # documented extension; everything else must still conform
    if job["method"]["type"] not in OPENAI_METHODS:
        openai_view["method"] = None  # `{"type": "lora", "lora": {...}}`: ours, validated above
    assert_openai(FineTuningJob, openai_view, JOB_EXTENSIONS)


def assert_page(page: dict[str, Any], item: type, check=None) -> None:
    assert_openai(SyncCursorPage[item], {**page, "data": []}, LIST_ENVELOPE)
    assert page["object"] == "list" and isinstance(page["has_more"], bool)
    assert page["first_id"] == (page["data"][0]["id"] if page["data"] else None)
    assert page["last_id"] == (page["data"][-1]["id"] if page["data"] else None)
    for obj in page["data"]:
        check(obj)


def _file(obj: dict) -> None:
    assert_openai(FileObject, obj, FILE_EXTENSIONS)


def _event(obj: dict) -> None:
    assert_openai(FineTuningJobEvent, obj)


def _checkpoint(obj: dict) -> None:
    assert_openai(FineTuningJobCheckpoint, obj, CHECKPOINT_EXTENSIONS)


def _ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_files_and_their_pages(client, trained_job):
    key = trained_job.key
    created = _ok(upload(client, key, jsonl(classification_rows(4))))
    _file(created)
    _file(_ok(client.get(f"/v1/files/{created['id']}", headers=auth(key))))
    for query in ("", "?order=asc&limit=2", "?purpose=fine-tune-results"):
        assert_page(_ok(client.get(f"/v1/files{query}", headers=auth(key))), FileObject, _file)
    assert_openai(FileDeleted, _ok(client.delete(f"/v1/files/{created['id']}", headers=auth(key))))


def test_jobs_in_every_state_and_their_pages(client, trained_job, registered_tiny_model):
    key = trained_job.key
    assert_job(_ok(client.get(f"{JOBS}/{trained_job.job_id}", headers=auth(key))))  # succeeded, finished
    train = upload(client, key, jsonl(classification_rows(8))).json()["id"]
    for method in ({"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
                   {"type": "lora", "lora": {"r": 2}}):
        job = _ok(client.post(JOBS, headers=auth(key), json={"model": registered_tiny_model, "training_file": train,
                                                               "method": method, "metadata": {"k": "v"}}))
        assert_job(job)  # queued
        assert_job(_ok(client.post(f"{JOBS}/{job['id']}/pause", headers=auth(key))))  # paused: ours
        assert_job(_ok(client.post(f"{JOBS}/{job['id']}/resume", headers=auth(key))))
        assert_job(_ok(client.post(f"{JOBS}/{job['id']}/cancel", headers=auth(key))))  # cancelled
    assert_page(_ok(client.get(f"{JOBS}?limit=3", headers=auth(key))), FineTuningJob, assert_job)


def test_a_failed_jobs_error_object(client, tenant, registered_tiny_model):
    from workers.tasks.run_job import execute

    _, key = tenant
    train = upload(client, key, jsonl(classification_rows(8))).json()["id"]
    job = _ok(client.post(JOBS, headers=auth(key), json={"model": registered_tiny_model, "training_file": train}))
    _ok(client.delete(f"/v1/files/{train}", headers=auth(key)))  # the worker finds it gone: the job fails
    assert execute(job["id"]) == "failed"
    failed = _ok(client.get(f"{JOBS}/{job['id']}", headers=auth(key)))
    assert failed["error"]["code"] == "file_not_found"
    assert_job(failed)


def test_events_checkpoints_and_their_pages(client, trained_job):
    key, job_id = trained_job.key, trained_job.job_id
    with session_scope() as db:  # a row as stored before levels followed OpenAI's names
        db.add(JobEvent(id="ftevent-legacywarning", job_id=job_id, message="old", level="warning"))
        record_event(db, job_id, "new", level="warn")
    events = _ok(client.get(f"{JOBS}/{job_id}/events?limit=100", headers=auth(key)))
    assert_page(events, FineTuningJobEvent, _event)
    assert {e["level"] for e in events["data"]} <= {"info", "warn", "error"}
    assert {e["type"] for e in events["data"]} == {"message", "metrics"}
    checkpoints = _ok(client.get(f"{JOBS}/{job_id}/checkpoints", headers=auth(key)))
    assert checkpoints["data"], "the trained job saved checkpoints"
    assert_page(checkpoints, FineTuningJobCheckpoint, _checkpoint)
    evaluated = [c["metrics"] for c in checkpoints["data"] if "eval_loss" in c["metrics"]]
    assert evaluated and all(m["valid_loss"] == m["full_valid_loss"] == m["eval_loss"] for m in evaluated)


def test_models_base_and_fine_tuned(client, trained_job):
    key = trained_job.key
    models = _ok(client.get("/v1/models", headers=auth(key)))
    assert_openai(SyncPage[Model], {**models, "data": []})
    fine_tuned = _ok(client.get(f"{JOBS}/{trained_job.job_id}", headers=auth(key)))["fine_tuned_model"]
    assert fine_tuned in {m["id"] for m in models["data"]}
    for model in models["data"]:  # our extension: the model's kind (base models: and architecture)
        assert_openai(Model, model, extensions=("kind", "architecture"))
        assert_openai(Model, _ok(client.get(f"/v1/models/{model['id']}", headers=auth(key))),
                      extensions=("kind", "architecture"))


@pytest.mark.parametrize("obj, problem", [
    ({"id": "x", "created_at": 1, "level": "warning", "message": "m", "object": "fine_tuning.job.event",
      "data": None, "type": "message"}, "level"),
    ({"id": "x", "created_at": "1", "level": "info", "message": "m", "object": "fine_tuning.job.event",
      "data": None, "type": "message"}, "created_at"),
    ({"id": "x", "created_at": 1, "level": "info", "message": "m", "object": "fine_tuning.job.event",
      "type": "message"}, "lacks"),
    ({"id": "x", "created_at": 1, "level": "info", "message": "m", "object": "fine_tuning.job.event",
      "data": None, "type": "message", "extra": 1}, "extra"),
])
def test_the_check_is_strict(obj, problem):
    """What the lenient client would accept, the check refuses: a wrong literal, a number as a string,
    a missing field, an undocumented one."""
    with pytest.raises(Exception, match=problem):
        assert_openai(FineTuningJobEvent, obj)
