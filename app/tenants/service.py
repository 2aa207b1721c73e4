"""Tenants, API keys and the audit trail. Services never commit; callers own the transaction."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, Conflict, NotFound, shown
from app.core.ids import new_id
from app.core.queue import get_redis
from app.core.security import generate_api_key, hash_api_key
from app.models import ApiKey, AuditEvent, Tenant, TenantLimits
from app.models.base import utcnow

log = logging.getLogger(__name__)
USE_AUDIT_INTERVAL = timedelta(hours=1)
LAST_USED_RESOLUTION = timedelta(seconds=30)
# Published after every committed change to keys or limits; every API process subscribes (app/tenants/auth.py),
# drops its cached credentials and acknowledges on the message's own list, which the publisher waits for.
AUTH_CHANNEL = "tuneforge:auth:changed"
ACK_TIMEOUT = 2.0


def _announce_change(session: Session) -> None:
    session.info.pop("announce_auth_change", None)
    try:
        client = get_redis()
        token = new_id("auth-", 16)
        receivers = client.publish(AUTH_CHANNEL, token)
        acks = ack_list(token)
        for _ in range(receivers):  # each subscribed API process answers once it has dropped its entries
            if client.blpop([acks], timeout=ACK_TIMEOUT) is None:
                log.warning("an API process did not confirm within %.0f s that it dropped its cached API keys; "
                            "its entries expire on their own", ACK_TIMEOUT)
                break
        client.delete(acks)
    except (redis.RedisError, RuntimeError) as exc:  # no Redis: API processes cache nothing while it is away
        log.warning("API key caches not told of a change, Redis unavailable (entries expire on their own): %s", exc)


def ack_list(token: str) -> str:
    return f"{AUTH_CHANNEL}:ack:{token}"


def invalidate_credentials(session: Session) -> None:
    """Make every API process drop its cached keys and limits once this session's transaction commits (not
    before: a process reloading in between would cache the old rows again). When the commit returns, every
    API process connected to Redis has dropped them (or ACK_TIMEOUT passed, logged)."""
    if not session.info.get("announce_auth_change"):
        session.info["announce_auth_change"] = True
        event.listen(session, "after_commit", _announce_change, once=True)


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
        invalidate_credentials(session)
    session.flush()
    return row


def list_api_keys(session: Session, tenant_id: str) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)))


def resolve_key(session: Session, key_hash: str) -> tuple[ApiKey, Tenant | None, TenantLimits | None] | None:
    """The active key with `key_hash`, its tenant and the tenant's limits row, in one SELECT; None if none.
    Records the key's use (audited at most hourly per key)."""
    found = session.execute(
        select(ApiKey, Tenant, TenantLimits)
        .outerjoin(Tenant, Tenant.id == ApiKey.tenant_id)
        .outerjoin(TenantLimits, TenantLimits.tenant_id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))).first()
    if found is None:
        return None
    _record_use(session, found[0])
    return found[0], found[1], found[2]


def authenticate_key(session: Session, key: str) -> ApiKey | None:
    """The active key row for `key`, or None. Records its use (audited at most hourly per key)."""
    found = resolve_key(session, hash_api_key(key))
    return found[0] if found else None


def _record_use(session: Session, row: ApiKey) -> None:
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > USE_AUDIT_INTERVAL:
        audit(session, row.id, "key.used", row.tenant_id)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        # not on every request: concurrent requests with one key would queue on this row's lock
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))

