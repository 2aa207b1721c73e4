"""/ui: the dashboard's pages (login, the tenant's jobs, one job) and the files they load. The files are
the API's own handlers called with the cookie's tenant, so a page shows exactly what the API answers,
within the same tenant scope. Left out of the OpenAPI document: it is not part of the API."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionDep
from app.artifacts.endpoints import download_artifact, download_artifact_folder
from app.core.errors import AppError, NotFound, shown
from app.jobs.endpoints import job_curves, list_events
from app.ui import views
from app.ui.routing import UiRoute, render
from app.ui.session import UiTenantDep, check_same_origin, forget_key, remember_key, tenant_for_key

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"ui.css": "text/css", "job.js": "text/javascript"}
Cursor = Annotated[str | None, Query(max_length=64)]  # an id: of the last job or event shown


@router.get("")
def jobs(request: Request, session: SessionDep, tenant: UiTenantDep, after: Cursor = None) -> Response:
    return render(request, "jobs.html", tenant=tenant, **views.jobs_page(session, tenant.id, after))


@router.get("/login")
def login_form(request: Request) -> Response:
    return render(request, "login.html")


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key like any API request would, then keep it in the dashboard's cookie."""
    check_same_origin(request)
    key = str((await request.form()).get("api_key") or "").strip()
    try:
        await run_in_threadpool(tenant_for_key, key)
    except AppError as exc:
        return render(request, "login.html", exc.status_code,
                      message="That key does not open a tenant's dashboard: " + exc.message)
    response = RedirectResponse("/ui", status_code=303)
    remember_key(response, request, key)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    check_same_origin(request)
    response = RedirectResponse("/ui/login", status_code=303)
    forget_key(response)
    return response


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: str, session: SessionDep, tenant: UiTenantDep) -> Response:
    return render(request, "job.html", tenant=tenant, **views.job_page(session, tenant.id, job_id))


@router.get("/jobs/{job_id}/events")
def job_events(job_id: str, session: SessionDep, tenant: UiTenantDep, after: Cursor = None,
               last_event_id: Annotated[str | None, Header(max_length=64)] = None) -> Response:
    """The job's live events after `after` (the newest the page showed), or after `Last-Event-ID` when the
    browser's EventSource reconnects."""
    return list_events(job_id, session, tenant, stream=True, last_event_id=last_event_id or after)


@router.get("/jobs/{job_id}/curves.png")
def curves(job_id: str, session: SessionDep, tenant: UiTenantDep) -> Response:
    return job_curves(job_id, session, tenant)


@router.get("/jobs/{job_id}/artifacts.tar")
def artifact_folder(job_id: str, session: SessionDep, tenant: UiTenantDep) -> Response:
    return download_artifact_folder(job_id, session, tenant)


@router.get("/jobs/{job_id}/artifacts/{name:path}")
def artifact(job_id: str, name: str, session: SessionDep, tenant: UiTenantDep) -> Response:
    return download_artifact(job_id, name, session, tenant)


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The dashboard's stylesheet and its one script (the pages allow no inline ones)."""
    if name not in STATIC_FILES:
        raise NotFound(f"The dashboard has no file named {shown(name)}.")
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})
