"""Tenants, API keys and the audit trail. Services never commit; callers own the transaction."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, Conflict, NotFound, shown
from app.core.ids import new_id
from app.core.security import generate_api_key, hash_api_key
from app.models import ApiKey, AuditEvent, Tenant
from app.models.base import utcnow

USE_AUDIT_INTERVAL = timedelta(hours=1)
LAST_USED_RESOLUTION = timedelta(seconds=30)


def audit(session: Session, actor: str, action: str, target: str | None = None, data: dict[str, Any] | None = None) -> None:
    session.add(AuditEvent(actor=actor, action=action, target=target, data=data))


def create_tenant(session: Session, name: str, actor: str = "cli") -> tuple[Tenant, str]:
    """Create a tenant and its first API key; the plain key is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("Tenant name must be 1-200 characters.", param="name")
    if session.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise Conflict(f"A tenant named {shown(name)} already exists.", param="name")
    tenant = Tenant(id=new_id("tenant-", 16), name=name)
    session.add(tenant)
    session.flush()
    audit(session, actor, "tenant.created", tenant.id, {"name": name})
    return tenant, create_api_key(session, tenant.id, actor=actor)


def create_api_key(session: Session, tenant_id: str | None, role: str = "tenant", actor: str = "cli") -> str:
    """A new key (tenant keys need a tenant, admin keys have none); shown once."""
    key = generate_api_key()
    row = ApiKey(id=new_id("key-", 16), tenant_id=tenant_id, role=role, key_hash=hash_api_key(key),
                 display_prefix=key[:7])
    session.add(row)
    session.flush()
    audit(session, actor, "key.created", row.id, {"tenant_id": tenant_id, "role": role})
    return key


def revoke_api_key(session: Session, key_id: str, actor: str = "cli", tenant_id: str | None = None) -> ApiKey:
    """Revoke a key at once; with `tenant_id`, only that tenant's keys are found."""
    query = select(ApiKey).where(ApiKey.id == key_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"No such API key: {shown(key_id)}.", param="key_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit(session, actor, "key.revoked", row.id, {"tenant_id": row.tenant_id})
    session.flush()
    return row


def list_api_keys(session: Session, tenant_id: str) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)))


def authenticate_key(session: Session, key: str) -> ApiKey | None:
    """The active key row for `key`, or None. Records its use (audited at most hourly per key)."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None)))
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > USE_AUDIT_INTERVAL:
        audit(session, row.id, "key.used", row.tenant_id)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        # not on every request: concurrent requests with one key would queue on this row's lock
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return row

