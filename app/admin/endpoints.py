"""/v1/admin: operator endpoints, reachable only with an admin key (never a tenant's)."""
from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from app.api.deps import SessionDep
from app.api.pagination import Limit, list_body, paginate
from app.core.errors import BadRequest, NotFound, shown
from app.core.text import storable
from app.models import ApiKey, AuditEvent, Tenant
from app.tenants import service
from app.tenants.limits import LIMIT_FIELDS, limits_for, set_limits

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def admin_actor(request: Request) -> str:
    """The admin key's id, set by AuthMiddleware; recorded as the actor of every audit event."""
    return request.state.admin_key_id


AdminDep = Annotated[str, Depends(admin_actor)]


# no control, invisible-formatting, bidi-override or separator characters; the schema states the same
# pattern, so what it allows the server accepts (lone surrogates, which JSON can escape, are refused too)
NAME_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\ufeff]+$"


class CreateTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, json_schema_extra={"pattern": NAME_PATTERN})

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not (storable(value) and re.match(NAME_PATTERN, value)):
            raise ValueError("use printable characters only (no control, invisible formatting or bidi-override "
                             "characters)")
        return value


class LimitsUpdate(BaseModel):
    """Fields left out keep their value; null resets a limit to the deployment default."""

    model_config = ConfigDict(extra="forbid")
    max_running_jobs: int | None = Field(None, ge=1)
    max_queued_jobs: int | None = Field(None, ge=1)
    max_storage_bytes: int | None = Field(None, ge=1)
    max_upload_bytes: int | None = Field(None, ge=1)
    requests_per_second: float | None = Field(None, gt=0)


def _tenant(session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"No such tenant: {shown(tenant_id)}.", param="tenant_id")
    return tenant


def _key(row: ApiKey) -> dict[str, Any]:
    ts = lambda v: int(v.timestamp()) if v else None  # noqa: E731
    return {"id": row.id, "object": "api_key", "tenant_id": row.tenant_id, "prefix": row.display_prefix,
            "created_at": ts(row.created_at), "last_used_at": ts(row.last_used_at), "revoked_at": ts(row.revoked_at)}


def _limits(session, tenant_id: str) -> dict[str, Any]:
    effective = limits_for(session, tenant_id)
    return {"object": "tenant.limits", "tenant_id": tenant_id, **{f: getattr(effective, f) for f in LIMIT_FIELDS}}


@router.post("/tenants")
def create_tenant(body: CreateTenant, session: SessionDep, actor: AdminDep) -> dict:
    tenant, key = service.create_tenant(session, body.name, actor=actor)
    session.commit()
    return {"id": tenant.id, "object": "tenant", "name": tenant.name, "api_key": key}


@router.post("/tenants/{tenant_id}/keys")
def issue_key(tenant_id: str, session: SessionDep, actor: AdminDep) -> dict:
    """Rotation = issue a new key, move clients to it, revoke the old one."""
    _tenant(session, tenant_id)
    key = service.create_api_key(session, tenant_id, actor=actor)
    session.commit()
    return {"object": "api_key", "tenant_id": tenant_id, "api_key": key}


@router.get("/tenants/{tenant_id}/keys")
def list_keys(tenant_id: str, session: SessionDep, actor: AdminDep) -> dict:
    _tenant(session, tenant_id)
    return {"object": "list", "data": [_key(k) for k in service.list_api_keys(session, tenant_id)]}


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: str, session: SessionDep, actor: AdminDep) -> dict:
    row = service.revoke_api_key(session, key_id, actor=actor)
    session.commit()
    return _key(row)


@router.get("/tenants/{tenant_id}/limits")
def get_limits(tenant_id: str, session: SessionDep, actor: AdminDep) -> dict:
    _tenant(session, tenant_id)
    return _limits(session, tenant_id)


@router.post("/tenants/{tenant_id}/limits")
def update_limits(tenant_id: str, body: LimitsUpdate, session: SessionDep, actor: AdminDep) -> dict:
    _tenant(session, tenant_id)
    changes = body.model_dump(exclude_unset=True)
    set_limits(session, tenant_id, **changes)
    service.audit(session, actor, "limits.updated", tenant_id, changes)
    session.commit()
    return _limits(session, tenant_id)


class _AuditOrder:
    """What paginate() needs of a model: `id` finds the cursor row, `seq` orders newest first.
    An audit event's autoincrement id is both."""

    id = AuditEvent.id
    seq = AuditEvent.id


AUDIT_CURSOR = "[0-9]{1,18}"  # an audit event's id (a bigint: 18 digits always fit)


def _audit_cursor(after: str | None) -> int | None:
    """Audit ids are integers (compared as such in SQL): anything else is an unknown cursor, not a 500."""
    if not after:
        return None
    if not re.fullmatch(AUDIT_CURSOR, after):
        raise BadRequest(f"Unknown cursor after={shown(after)}.", param="after")
    return int(after)


@router.get("/audit")
def audit_events(session: SessionDep, actor: AdminDep, target: str | None = None,
                 after: Annotated[str | None, Query(json_schema_extra={"pattern": f"^(|{AUDIT_CURSOR})$"})] = None,
                 limit: Limit = 50) -> dict:
    """Newest first; page on with `after` = the previous page's `last_id`."""
    query = select(AuditEvent)
    if target:
        query = query.where(AuditEvent.target == target)
    rows, has_more = paginate(session, query, _AuditOrder, _audit_cursor(after), limit)
    return list_body([
        {"id": e.id, "actor": e.actor, "action": e.action, "target": e.target, "data": e.data,
         "created_at": int(e.created_at.timestamp())} for e in rows], has_more)
