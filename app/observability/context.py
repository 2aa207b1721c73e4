"""Who a log line is about (job id, tenant id), carried in context variables: set by the API's request
middleware and by each Celery task, read by the log formatter on every line."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_job_id: ContextVar[str | None] = ContextVar("tuneforge_job_id", default=None)
_tenant_id: ContextVar[str | None] = ContextVar("tuneforge_tenant_id", default=None)
_scope: ContextVar[dict[str, Any] | None] = ContextVar("tuneforge_request_scope", default=None)

JOB_PATH_PARAMS = ("job_id", "fine_tuning_job_id")


def bind(*, job_id: str | None = None, tenant_id: str | None = None) -> None:
    """Name the job and/or tenant of everything logged from here on in this context."""
    if job_id is not None:
        _job_id.set(job_id)
    if tenant_id is not None:
        _tenant_id.set(tenant_id)


@contextmanager
def bound(*, job_id: str | None = None, tenant_id: str | None = None) -> Iterator[None]:
    """`bind` for the duration of a block (a Celery task), restoring the previous values after."""
    tokens = [_job_id.set(job_id), _tenant_id.set(tenant_id)]
    try:
        yield
    finally:
        _tenant_id.reset(tokens[1])
        _job_id.reset(tokens[0])


@contextmanager
def request_scope(scope: dict[str, Any]) -> Iterator[None]:
    """Read ids from an ASGI request's scope as it fills: the tenant once authentication has run, the
    job once routing has matched a `{job_id}` path parameter."""
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)


def current() -> dict[str, str | None]:
    """{"job_id", "tenant_id"} known at this point (None where unknown)."""
    job_id, tenant_id = _job_id.get(), _tenant_id.get()
    scope = _scope.get()
    if scope is not None:
        state, params = scope.get("state") or {}, scope.get("path_params") or {}
        tenant_id = tenant_id or state.get("tenant_id")
        job_id = job_id or next((params[name] for name in JOB_PATH_PARAMS if params.get(name)), None)
    return {"job_id": job_id, "tenant_id": tenant_id}
