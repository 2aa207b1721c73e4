"""Tenants and their API keys. Services never commit; callers own the transaction."""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, Conflict
from app.core.ids import new_id
from app.core.security import generate_api_key, hash_api_key
from app.models import ApiKey, Tenant
from app.models.base import utcnow


def create_tenant(session: Session, name: str) -> tuple[Tenant, str]:
    """Create a tenant and its first API key; the plain key is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("Tenant name must be 1-200 characters.", param="name")
    if session.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise Conflict(f"A tenant named {name!r} already exists.", param="name")
    tenant = Tenant(id=new_id("tenant-", 16), name=name)
    session.add(tenant)
    session.flush()
    return tenant, create_api_key(session, tenant.id)


def create_api_key(session: Session, tenant_id: str) -> str:
    key = generate_api_key()
    session.add(ApiKey(id=new_id("key-", 16), tenant_id=tenant_id, key_hash=hash_api_key(key), display_prefix=key[:7]))
    session.flush()
    return key


def authenticate(session: Session, key: str) -> Tenant | None:
    """The tenant owning an active key, or None. Records the key's last use."""
    api_key = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None))
    )
    if api_key is None:
        return None
    session.execute(update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=utcnow()))
    return session.get(Tenant, api_key.tenant_id)
