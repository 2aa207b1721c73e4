"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, events, checkpoints, curves."""
from __future__ import annotations

import json
import logging

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionDep, TenantDep
from app.api.pagination import Limit, list_body, paginate
from app.core.errors import BadRequest
from app.idempotency import service as idempotency
from app.jobs import dispatch, service
from app.jobs.curves import job_curve_rows, render_curves
from app.jobs.estimate import estimated_finish
from app.jobs.schemas import METADATA_FILTER, checkpoint_object, event_object, job_object, metadata_filter
from app.jobs.stream import STREAM_RESPONSES, stream_events
from app.models import Job, JobCheckpoint, JobEvent

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
log = logging.getLogger(__name__)


async def json_body(request: Request) -> dict:
    """Parse the body ourselves so every malformed body is a 400 in OpenAI's shape."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:
        raise BadRequest("Request body is nested too deeply.") from exc
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body  # NUL characters and lone surrogates: refused by the service, once what the body names exists


@router.post("")
async def create_job(request: Request, session: SessionDep, tenant: TenantDep) -> dict:
    """Idempotent: an `Idempotency-Key` replays the first response; without one, an identical body
    from the same tenant within RETRY_WINDOW returns the job it already created (client retries)."""
    body = await json_body(request)
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    fingerprint = idempotency.fingerprint("fine_tuning.jobs.create", body)

    def create() -> dict:
        if key is not None:
            stored = idempotency.replay(session, tenant.id, key, fingerprint)
            if stored is not None:
                return stored
        elif (duplicate := service.recent_duplicate(session, tenant.id, fingerprint)) is not None:
            return job_object(duplicate)
        job = service.create_job(session, tenant.id, body, fingerprint)
        response = job_object(job)
        if key is not None:
            idempotency.remember(session, tenant.id, key, fingerprint, response)
        session.commit()
        dispatch.admit()
        return response

    return await run_in_threadpool(create)


@router.get("", openapi_extra={"parameters": [METADATA_FILTER]})
def list_jobs(request: Request, session: SessionDep, tenant: TenantDep, after: str | None = None,
              limit: Limit = 20) -> dict:
    filters = metadata_filter(request.query_params)
    rows, has_more = paginate(session, service.list_jobs(tenant.id, filters), Job, after, limit)
    return list_body([job_object(j, estimated_finish(session, j)) for j in rows], has_more)


# The hottest read (clients poll it): one thread-pool hop for the database work, a Core row instead of an ORM
# object, and the body encoded once (job_object is JSON-ready: no response-model pass). No docstring: it would
# become the operation's OpenAPI description.
@router.get("/{job_id}", response_model=dict)
async def retrieve_job(job_id: str, tenant: TenantDep) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(service.read_job, tenant.id, job_id))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    job = service.cancel_job(session, tenant.id, job_id)
    session.commit()
    return job_object(job)


@router.post("/{job_id}/pause")
def pause_job(job_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    job = service.pause_job(session, tenant.id, job_id)
    session.commit()
    return job_object(job)


@router.post("/{job_id}/resume")
def resume_job(job_id: str, session: SessionDep, tenant: TenantDep) -> dict:
    job = service.resume_job(session, tenant.id, job_id)
    session.commit()
    response = job_object(job)  # the state this request made: a worker may claim it during admit()
    dispatch.admit()
    return response


@router.get("/{job_id}/events", responses=STREAM_RESPONSES)
def list_events(job_id: str, session: SessionDep, tenant: TenantDep, after: str | None = None,
                limit: Limit = 20, stream: bool = False,
                last_event_id: Annotated[str | None, Header(max_length=64)] = None) -> dict:
    """A page of events, newest first; with `stream=true` Server-Sent Events instead (app/jobs/stream.py)."""
    job = service.get_job(session, tenant.id, job_id)
    if stream:
        return stream_events(session, job, last_event_id)
    rows, has_more = paginate(session, service.events_query(job), JobEvent, after, limit)
    return list_body([event_object(e) for e in rows], has_more)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(job_id: str, session: SessionDep, tenant: TenantDep, after: str | None = None,
                     limit: Limit = 10) -> dict:
    job = service.get_job(session, tenant.id, job_id)
    rows, has_more = paginate(session, service.checkpoints_query(job), JobCheckpoint, after, limit)
    return list_body([checkpoint_object(c, job) for c in rows], has_more)


CURVES_RESPONSES: dict[int | str, dict] = {
    200: {"description": "Train loss, eval loss and eval accuracy against the step, as recorded so far "
                         "(the rows of the job's metrics CSV), as a PNG.",
          "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
    409: {"description": "The job has no metrics yet (`metrics_not_ready`): its curves appear once it has "
                         "trained a step."}}


@router.get("/{job_id}/curves.png", response_class=Response, responses=CURVES_RESPONSES)
def job_curves(job_id: str, session: SessionDep, tenant: TenantDep) -> Response:
    """The job's learning curves, drawn from its metrics now (a running job's so far, so never cached)."""
    job = service.get_job(session, tenant.id, job_id)
    rows = job_curve_rows(session, job)
    session.close()  # drawing takes a moment: hold no connection meanwhile
    return Response(render_curves(rows, job.id), media_type="image/png", headers={"Cache-Control": "no-cache"})
