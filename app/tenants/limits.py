"""Per-tenant quotas: stored in `tenant_limits`, falling back to deployment settings.

Exceeded quotas answer 429 in OpenAI's error shape. Quotas that waiting cannot cure carry
`x-should-retry: false` (the `openai` client would otherwise retry them); the request-rate limit
carries `Retry-After`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import AppError
from app.core.queue import get_redis
from app.models import Corpus, File, Job, TenantLimits
from app.models.job import JobStatus
from app.tenants.service import invalidate_credentials

log = logging.getLogger(__name__)


class QuotaExceeded(AppError):
    status_code = 429
    type = "insufficient_quota"
    code = "quota_exceeded"

    def __init__(self, message: str, retry_after: int | None = None, **kwargs):
        headers = {"Retry-After": str(retry_after)} if retry_after else {"x-should-retry": "false"}
        super().__init__(message, headers=headers, **kwargs)


@dataclass(frozen=True)
class Limits:
    max_running_jobs: int | None
    max_queued_jobs: int | None
    max_storage_bytes: int | None
    max_upload_bytes: int
    requests_per_second: float | None


def limits_for(session: Session, tenant_id: str) -> Limits:
    return effective_limits(session.get(TenantLimits, tenant_id))


def effective_limits(row: TenantLimits | None) -> Limits:
    """A tenant's limits row (None: it has none) over the deployment defaults."""
    settings = get_settings()

    def pick(name: str, default):
        value = getattr(row, name, None) if row is not None else None
        return default if value is None else value

    upload = pick("max_upload_bytes", settings.max_upload_bytes)
    return Limits(pick("max_running_jobs", settings.max_running_per_tenant),
                  pick("max_queued_jobs", settings.max_queued_per_tenant),
                  pick("max_storage_bytes", settings.max_storage_per_tenant),
                  min(upload, settings.max_upload_bytes),
                  pick("requests_per_second", settings.requests_per_second))


def check_queued(session: Session, tenant_id: str) -> None:
    limit = limits_for(session, tenant_id).max_queued_jobs
    if limit is None:
        return
    waiting = session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant_id, Job.status.in_((JobStatus.validating_files, JobStatus.queued))))
    if waiting >= limit:
        raise QuotaExceeded(f"You have {waiting} jobs waiting, the limit for this account is {limit}; "
                            "wait for some to start or cancel some.")


def check_storage(session: Session, tenant_id: str, incoming: int, param: str = "file") -> None:
    limit = limits_for(session, tenant_id).max_storage_bytes
    if limit is None:
        return
    used = stored_bytes(session, tenant_id)
    if used + incoming > limit:
        raise QuotaExceeded(f"Storing {incoming} more bytes would exceed this account's storage limit of "
                            f"{limit} bytes ({used} used by uploads and corpus indexes); delete files or "
                            "corpora you no longer need.", param=param)


def stored_bytes(session: Session, tenant_id: str) -> int:
    """What counts against `max_storage_bytes`: the tenant's uploads plus its corpora's BM25 indexes (a
    corpus being indexed counts its text's size until its index's real size is known)."""
    files = select(func.coalesce(func.sum(File.bytes), 0)).where(File.tenant_id == tenant_id).scalar_subquery()
    indexes = (select(func.coalesce(func.sum(func.coalesce(Corpus.index_bytes, Corpus.bytes)), 0))
               .where(Corpus.tenant_id == tenant_id).scalar_subquery())
    return int(session.scalar(select(files + indexes)))


def rate_key(tenant_id: str) -> str:
    """This second's request counter of a tenant: a one-second window in Redis, shared by every API process."""
    return f"tuneforge:rate:{tenant_id}:{int(time.time())}"


def charge_rate(pipe: redis.client.Pipeline, tenant_id: str) -> redis.client.Pipeline:
    """Queue a request's charge on `pipe` (its count is the first of the two results)."""
    key = rate_key(tenant_id)
    return pipe.incr(key).expire(key, 2)


def check_rate_count(count: int | None, requests_per_second: float | None) -> None:
    """429 once this second's count is over the limit; None (Redis was unavailable) passes."""
    if requests_per_second is not None and count is not None and count > requests_per_second:
        raise QuotaExceeded(f"Rate limit of {requests_per_second:g} requests per second exceeded; retry shortly.",
                            retry_after=1, code="rate_limit_exceeded")


def check_rate(tenant_id: str, requests_per_second: float | None) -> None:
    """Charge one request to the tenant's counter and check it."""
    if requests_per_second is None:
        return
    try:
        count = charge_rate(get_redis().pipeline(transaction=False), tenant_id).execute()[0]
    except redis.RedisError as exc:  # a Redis outage must not take the API down: fail open
        log.warning("rate limit not checked, Redis unavailable: %s", exc)
        return
    check_rate_count(count, requests_per_second)


LIMIT_FIELDS = ("max_running_jobs", "max_queued_jobs", "max_storage_bytes", "max_upload_bytes", "requests_per_second")


def set_limits(session: Session, tenant_id: str, **values: float | int | None) -> TenantLimits:
    """Operator action: set (or with None, reset to the default) any of LIMIT_FIELDS."""
    unknown = set(values) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown limits: {sorted(unknown)}")
    row = session.get(TenantLimits, tenant_id) or TenantLimits(tenant_id=tenant_id)
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive")
        setattr(row, name, value)
    session.add(row)
    session.flush()
    invalidate_credentials(session)  # the API processes' cached request rates
    return row
