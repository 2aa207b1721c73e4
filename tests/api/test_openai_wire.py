"""The OpenAI wire details the official client relies on, exercised with that client over a real socket:
the jobs list's metadata filter, 409s it must not retry, result files, estimated_finish, files.list's
order and resumable (Range) downloads."""
from __future__ import annotations

import csv
import hashlib
import io
from datetime import timedelta

import httpx
import httpx2
import openai
import pytest
from sqlalchemy import update

from app.core.db import session_scope
from app.jobs.events import record_event
from app.jobs.results import FILENAME, result_file_id
from app.models import Job, JobEvent
from app.models.base import utcnow
from tests.api.helpers import auth, classification_rows, jsonl

JOBS = "/v1/fine_tuning/jobs"


def client_for(live_url: str, key: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key=key, timeout=30, **kwargs)


def _upload(client: openai.OpenAI, n: int = 8) -> str:
    return client.files.create(file=("train.jsonl", io.BytesIO(jsonl(classification_rows(n)))),
                               purpose="fine-tune").id


def queued_job(client, key: str, model: str) -> str:
    train = client.post("/v1/files", headers=auth(key), data={"purpose": "fine-tune"},
                        files={"file": ("t.jsonl", jsonl(classification_rows(8)))}).json()["id"]
    return client.post(JOBS, headers=auth(key), json={"model": model, "training_file": train}).json()["id"]


def test_jobs_list_takes_the_clients_metadata_filter(live_url, tenant, registered_tiny_model):
    """`jobs.list(metadata={...})` sends metadata[k]=v; the JSON form `metadata={...}` still works."""
    client = client_for(live_url, tenant[1], max_retries=0)
    train = _upload(client)
    nlp, cv = (client.fine_tuning.jobs.create(model=registered_tiny_model, training_file=train,
                                              metadata={"team": team, "stage": "dev"}).id for team in ("nlp", "cv"))
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "nlp"})] == [nlp]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "cv", "stage": "dev"})] == [cv]
    assert list(client.fine_tuning.jobs.list(metadata={"team": "nlp", "stage": "prod"})) == []
    assert {j.id for j in client.fine_tuning.jobs.list()} == {nlp, cv}
    raw = httpx.get(f"{live_url}{JOBS}", params={"metadata": '{"team": "cv"}'}, headers=auth(tenant[1]))
    assert [j["id"] for j in raw.json()["data"]] == [cv]
    bad = httpx.get(f"{live_url}{JOBS}", params={"metadata": "team=cv"}, headers=auth(tenant[1]))
    assert bad.status_code == 400 and "metadata[team]=nlp" in bad.json()["error"]["message"]


def test_conflicts_from_cancel_pause_resume_are_not_retried(live_url, tenant, registered_tiny_model):
    """Each 409 says `x-should-retry: false`, so the client (here allowed 3 retries) sends it once."""
    sent: list[str] = []
    http = httpx2.Client(event_hooks={"request": [lambda request: sent.append(request.url.path)]})
    client = client_for(live_url, tenant[1], max_retries=3, http_client=http)
    job = client.fine_tuning.jobs.create(model=registered_tiny_model, training_file=_upload(client))
    client.fine_tuning.jobs.cancel(job.id)
    for action in (client.fine_tuning.jobs.cancel, client.fine_tuning.jobs.pause, client.fine_tuning.jobs.resume):
        sent.clear()
        with pytest.raises(openai.ConflictError) as refused:
            action(job.id)
        assert refused.value.response.headers["x-should-retry"] == "false"
        assert len(sent) == 1, sent


def test_a_succeeded_job_has_its_metrics_csv_as_result_file(live_url, trained_job):
    client = client_for(live_url, trained_job.key, max_retries=0)
    job = client.fine_tuning.jobs.retrieve(trained_job.job_id)
    assert job.result_files == [result_file_id(job.id)]
    file = client.files.retrieve(job.result_files[0])
    assert (file.purpose, file.filename, file.status) == ("fine-tune-results", FILENAME, "processed")
    assert file.id in {f.id for f in client.files.list(purpose="fine-tune-results")}
    content = client.files.content(file.id).content
    assert len(content) == file.bytes
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert list(rows[0]) == ["step", "train_loss", "valid_loss", "valid_accuracy"]
    metrics = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    by_step = {int(r["step"]): r for r in rows}
    for data in metrics:
        if "train_loss" in data:
            assert float(by_step[data["step"]]["train_loss"]) == pytest.approx(data["train_loss"])
        if "eval_loss" in data and "flops" not in data:
            row = by_step[data["step"]]
            assert float(row["valid_loss"]) == pytest.approx(data["eval_loss"])
            assert float(row["valid_accuracy"]) == pytest.approx(data["eval_accuracy"])
    assert any(r["valid_loss"] for r in rows) and any(r["train_loss"] for r in rows)
    assert [int(r["step"]) for r in rows] == sorted(int(r["step"]) for r in rows)


def test_files_list_order(live_url, tenant):
    client = client_for(live_url, tenant[1], max_retries=0)
    ids = [_upload(client, 2) for _ in range(3)]
    assert [f.id for f in client.files.list()] == ids[::-1]
    assert [f.id for f in client.files.list(order="desc")] == ids[::-1]
    assert [f.id for f in client.files.list(order="asc", limit=2)] == ids  # pages on with `after`, ascending
    assert [f.id for f in client.files.list(order="asc", after=ids[0])] == ids[1:]
    bad = httpx.get(f"{live_url}/v1/files", params={"order": "sideways"}, headers=auth(tenant[1]))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "order"


def _resumed(url: str, key: str, size: int, sha256: str) -> None:
    """Downloaded in two ranges (as a resumed download would be), the bytes are the whole file."""
    whole = httpx.get(url, headers=auth(key))
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    assert len(whole.content) == size and whole.headers["x-checksum-sha256"] == sha256
    head = httpx.get(url, headers={**auth(key), "Range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-range"] == f"bytes 0-9/{size}"
    rest = httpx.get(url, headers={**auth(key), "Range": "bytes=10-"})
    assert rest.status_code == 206 and head.content + rest.content == whole.content
    assert hashlib.sha256(head.content + rest.content).hexdigest() == sha256
    assert httpx.get(url, headers={**auth(key), "Range": f"bytes={size + 10}-"}).status_code == 416


def test_file_and_artifact_downloads_honour_range(live_url, trained_job):
    key, job_id = trained_job.key, trained_job.job_id
    file = httpx.get(f"{live_url}/v1/files/{result_file_id(job_id)}", headers=auth(key)).json()
    _resumed(f"{live_url}/v1/files/{file['id']}/content", key, file["bytes"], file["sha256"])
    artifacts = httpx.get(f"{live_url}{JOBS}/{job_id}/artifacts", headers=auth(key)).json()["data"]
    biggest = max(artifacts, key=lambda a: a["bytes"])
    _resumed(f"{live_url}{JOBS}/{job_id}/artifacts/{biggest['name']}", key, biggest["bytes"], biggest["sha256"])


def test_estimated_finish_follows_the_measured_step_time(client, tenant, registered_tiny_model):
    """Steps 10 → 30 took 20 s: the 70 steps left of 100 end 70 s after step 30's report."""
    _, key = tenant
    job_id = queued_job(client, key, registered_tiny_model)
    assert client.get(f"{JOBS}/{job_id}", headers=auth(key)).json()["estimated_finish"] is None  # queued
    t0 = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    with session_scope() as db:
        db.execute(update(Job).where(Job.id == job_id).values(status="running"))
        for offset, message, kind, data in [
                (0, "Training 10 of 20 parameters for 100 steps", "message", {"total_steps": 100}),
                (10, "Step 10", "metrics", {"step": 10, "train_loss": 0.9}),
                (20, "Step 20", "metrics", {"step": 20, "eval_loss": 0.8}),  # evaluation: not a training step
                (30, "Step 30", "metrics", {"step": 30, "train_loss": 0.7})]:
            event = record_event(db, job_id, message, type=kind, data=data)
            event.created_at = t0 + timedelta(seconds=offset)
    expected = int((t0 + timedelta(seconds=30 + 70)).timestamp())
    try:
        assert client.get(f"{JOBS}/{job_id}", headers=auth(key)).json()["estimated_finish"] == expected
        listed = client.get(JOBS, headers=auth(key)).json()["data"]
        assert next(j for j in listed if j["id"] == job_id)["estimated_finish"] == expected
    finally:
        with session_scope() as db:
            db.execute(update(Job).where(Job.id == job_id).values(status="cancelled"))


def test_events_are_recorded_and_served_with_openais_levels(client, tenant, registered_tiny_model):
    _, key = tenant
    job_id = queued_job(client, key, registered_tiny_model)
    with session_scope() as db:
        assert record_event(db, job_id, "legacy caller", level="warning").level == "warn"  # type: ignore[arg-type]
        db.add(JobEvent(id="ftevent-stored-warning", job_id=job_id, message="stored before", level="warning"))
    events = client.get(f"{JOBS}/{job_id}/events", headers=auth(key)).json()["data"]
    assert {e["message"]: e["level"] for e in events}["stored before"] == "warn"
    assert {e["level"] for e in events} <= {"info", "warn", "error"}
