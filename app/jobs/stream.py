"""`GET /v1/fine_tuning/jobs/{id}/events?stream=true`: the job's events, oldest first, as Server-Sent
Events (FastAPI's `EventSourceResponse` and its SSE encoder), following new ones until the job ends.

Each event carries `id:` (the event's id), so a reconnecting client's `Last-Event-ID` resumes right
after it. Once the job is succeeded, failed or cancelled and every event is sent, a last `event: done`
carries the job object and the stream ends. While nothing happens a comment line goes out every
`TUNEFORGE_SSE_KEEPALIVE` seconds so proxies keep the connection open; with
`TUNEFORGE_SSE_MAX_DURATION` a stream ends after that long (clients reconnect with Last-Event-ID). No
database session is held while waiting: each poll (every `TUNEFORGE_EVENTS_POLL_INTERVAL` s) is its own
short transaction.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, format_sse_event
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.errors import BadRequest, shown, unavailable_database
from app.jobs.schemas import event_object, job_object
from app.models import Job, JobEvent
from app.models.job import FINAL_STATUSES

BATCH = 500          # events read per poll; a longer backlog is read in further polls without waiting
RETRY_MS = 3000      # the client's reconnection delay (the `retry:` field)
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {
    "schema": {"type": "string"}}}, "description": "With `stream=true`: the events as Server-Sent Events "
    "(`id:` = event id, `data:` = the event object), then `event: done` with the job."}}


def stream_events(session: Session, job: Job, last_event_id: str | None) -> EventSourceResponse:
    """The streaming response for `job`, after the event named by `Last-Event-ID` (from the start without
    one). Closes the request's session: the stream reads in its own short transactions."""
    cursor = 0
    if last_event_id:
        cursor = session.scalar(select(JobEvent.seq).where(JobEvent.id == last_event_id, JobEvent.job_id == job.id))
        if cursor is None:
            raise BadRequest(f"Last-Event-ID {shown(last_event_id)} is not an event of job {job.id}; reconnect "
                             "without it to receive the job's events from the start.", param="Last-Event-ID")
    session.close()
    return EventSourceResponse(_follow(job.id, cursor), headers={"Cache-Control": "no-cache",
                                                                  "X-Accel-Buffering": "no"})


def _read(job_id: str, cursor: int) -> tuple[dict[str, Any] | None, list[tuple[int, str, dict[str, Any]]]]:
    """The job (read first: if it has ended, every event of its ending is already visible to the second
    query) and up to BATCH events after `cursor`, as wire objects."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > cursor)
                                 .order_by(JobEvent.seq).limit(BATCH))
        return (job_object(job) if job else None), [(e.seq, e.id, event_object(e)) for e in events]


async def _follow(job_id: str, cursor: int) -> AsyncIterator[bytes]:
    settings = get_settings()
    yield format_sse_event(retry=RETRY_MS)
    quiet_since = started = time.monotonic()
    while settings.sse_max_duration is None or time.monotonic() - started < settings.sse_max_duration:
        try:
            job, events = await run_in_threadpool(_read, job_id, cursor)
        except Exception as exc:  # PostgreSQL away for a moment: keep the client, try again next poll
            if not unavailable_database(exc):
                raise
            job, events = {"status": None}, []
        for cursor, event_id, body in events:
            yield format_sse_event(data_str=json.dumps(body), id=event_id)
        if events:
            quiet_since = time.monotonic()
        if len(events) == BATCH:
            continue
        if job is None:  # deleted with its tenant
            return
        if job["status"] in FINAL_STATUSES:
            yield format_sse_event(event="done", data_str=json.dumps(job))
            return
        if time.monotonic() - quiet_since >= settings.sse_keepalive:
            yield KEEPALIVE_COMMENT
            quiet_since = time.monotonic()
        await anyio.sleep(settings.events_poll_interval)
    yield format_sse_event(comment="stream time limit reached: reconnect with Last-Event-ID to continue")
