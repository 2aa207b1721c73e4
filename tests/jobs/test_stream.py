"""GET /v1/fine_tuning/jobs/{id}/events?stream=true: Server-Sent Events that resume from Last-Event-ID
and end with the job. A finished job's stream is read whole through the test client; a live one
over a real socket from uvicorn in a thread, while the test writes events and ends the job."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from app.core.db import session_scope
from app.core.embedded import free_port
from app.jobs import state
from app.jobs.events import record_event
from app.models import Job
from app.models.job import JobStatus
from tests.api.helpers import assert_error, auth
from tests.conftest import DB_NAME, new_tenant
from tests.sse import Message, messages, parse
from tests.overrides import insert_job, settings_override  # noqa: F401 (fixture)


def add_events(job_id: str, *texts: str) -> list[str]:
    with session_scope() as db:
        events = [record_event(db, job_id, t) for t in texts]
    return [e.id for e in events]


def events_url(job_id: str) -> str:
    return f"/v1/fine_tuning/jobs/{job_id}/events?stream=true"


def finished_job(tenant_id: str, n: int = 4) -> tuple[str, list[str]]:
    job_id = insert_job(tenant_id, status=JobStatus.running)
    ids = add_events(job_id, *[f"line {i}" for i in range(n)])
    with session_scope() as db:
        state.cancel(db, db.get(Job, job_id))
    return job_id, ids


def test_a_finished_jobs_stream_replays_every_event_then_done(client, tenant):
    tenant_id, key = tenant
    job_id, ids = finished_job(tenant_id)
    response = client.get(events_url(job_id), headers=auth(key))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    stream = parse(response.text)
    assert stream[0].retry == 3000
    events = [m for m in stream if m.id]
    assert [m.id for m in events][:4] == ids and [json.loads(m.data)["id"] for m in events] == [m.id for m in events]
    assert json.loads(events[-1].data)["message"] == "Job cancelled by user"  # oldest first, to the end
    assert all(json.loads(m.data)["object"] == "fine_tuning.job.event" for m in events)
    done = stream[-1]
    assert done.event == "done" and done.id is None and json.loads(done.data)["status"] == "cancelled"


def test_last_event_id_resumes_after_that_event(client, tenant):
    tenant_id, key = tenant
    job_id, ids = finished_job(tenant_id)
    resumed = parse(client.get(events_url(job_id), headers={**auth(key), "Last-Event-ID": ids[1]}).text)
    assert [m.id for m in resumed if m.id][:2] == ids[2:]
    assert ids[1] not in [m.id for m in resumed]


def test_bad_requests_are_4xx(client, tenant):
    tenant_id, key = tenant
    job_id, _ = finished_job(tenant_id)
    other_job, other_ids = finished_job(new_tenant()[0])
    assert_error(client.get(events_url(job_id), headers={**auth(key), "Last-Event-ID": other_ids[0]}), 400,
                 "not an event of job", param="Last-Event-ID")
    assert_error(client.get(events_url(other_job), headers=auth(key)), 404, "no such fine-tuning job")
    assert_error(client.get(f"/v1/fine_tuning/jobs/{job_id}/events?stream=maybe", headers=auth(key)), 400,
                 param="stream")
    assert client.get(f"/v1/fine_tuning/jobs/{job_id}/events", headers=auth(key)).json()["object"] == "list"


@pytest.fixture
def live_server(database, settings_override) -> Iterator[str]:  # noqa: F811
    """The app served by uvicorn in a thread: real sockets, so a stream can be read while it runs."""
    from app.main import app

    settings_override(events_poll_interval=0.1, sse_keepalive=0.4)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def idle_in_transaction() -> int:
    with session_scope() as db:
        return db.scalar(text("select count(*) from pg_stat_activity where datname = :db and "
                              "state like 'idle in transaction%'"), {"db": DB_NAME})


def test_a_live_stream_follows_new_events_with_keepalives_until_the_job_ends(live_server):
    tenant_id, key = new_tenant()
    job_id = insert_job(tenant_id, status=JobStatus.running)
    first = add_events(job_id, "before connecting")
    seen: list[Message] = []
    with httpx.stream("GET", live_server + events_url(job_id), headers=auth(key), timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        reader = messages(lines)
        seen.append(next(reader))  # retry:
        seen.append(next(reader))
        assert seen[-1].id == first[0]
        keepalive = next(reader)  # nothing new for sse_keepalive seconds: a comment keeps proxies open
        assert keepalive.comments and keepalive.id is None
        assert idle_in_transaction() == 0  # waiting holds no transaction open
        later = add_events(job_id, "step 1", "step 2")
        got = [m for m in (next(reader) for _ in range(4)) if m.id]
        assert [m.id for m in got][:2] == later
        with session_scope() as db:
            state.cancel(db, db.get(Job, job_id))
        rest = list(reader)  # the server ends the stream
    assert rest[-1].event == "done" and json.loads(rest[-1].data)["status"] == "cancelled"
    assert any(json.loads(m.data).get("message") == "Job cancelled by user" for m in rest if m.id)


def test_a_stream_ends_after_the_operators_time_limit_and_resumes(client, tenant, settings_override):  # noqa: F811
    tenant_id, key = tenant
    job_id = insert_job(tenant_id, status=JobStatus.queued)
    first = add_events(job_id, "waiting")
    settings_override(sse_max_duration=0.5, events_poll_interval=0.1)
    stream = parse(client.get(events_url(job_id), headers=auth(key)).text)
    assert [m.id for m in stream if m.id] == first and "reconnect with Last-Event-ID" in stream[-1].comments[0]
    later = add_events(job_id, "still waiting")
    resumed = parse(client.get(events_url(job_id), headers={**auth(key), "Last-Event-ID": first[0]}).text)
    assert [m.id for m in resumed if m.id] == later
