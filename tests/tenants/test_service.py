"""Tenant and key rules against the real database; each test's writes are rolled back."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from app.core.errors import BadRequest, Conflict
from app.core.security import hash_api_key
from app.models import ApiKey
from app.models.base import utcnow
from app.tenants.service import authenticate_key, create_api_key, create_tenant


def test_keys_are_stored_hashed_and_authenticate(session):
    tenant, key = create_tenant(session, "acme-unit")
    stored = session.scalar(select(ApiKey).where(ApiKey.tenant_id == tenant.id))
    assert stored.key_hash == hash_api_key(key) and key not in stored.key_hash
    assert authenticate_key(session, key).tenant_id == tenant.id
    assert authenticate_key(session, key + "x") is None
    assert session.get(ApiKey, stored.id).last_used_at is not None


def test_revoked_key_no_longer_authenticates(session):
    tenant, key = create_tenant(session, "revoked-unit")
    second = create_api_key(session, tenant.id)
    session.execute(update(ApiKey).where(ApiKey.key_hash == hash_api_key(key)).values(revoked_at=utcnow()))
    assert authenticate_key(session, key) is None
    assert authenticate_key(session, second).tenant_id == tenant.id


def test_tenant_names_are_unique_and_bounded(session):
    create_tenant(session, "dup-unit")
    with pytest.raises(Conflict):
        create_tenant(session, "dup-unit")
    with pytest.raises(BadRequest):
        create_tenant(session, "   ")
