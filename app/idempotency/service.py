"""Exactly-once creation: `Idempotency-Key` replays, and safe retries for clients that send none.

Each creating request takes a transaction-scoped advisory lock on its (tenant, key) or (tenant,
fingerprint), so concurrent duplicates serialise: the second sees the first's committed result.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, Conflict
from app.models import IdempotencyKey

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255


def fingerprint(*parts: Any) -> str:
    """sha256 of a canonical JSON rendering of the request's meaningful parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters.", param="Idempotency-Key")
    return key


def lock(session: Session, tenant_id: str, token: str) -> None:
    session.execute(text("select pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"{tenant_id}|{token}"})


def replay(session: Session, tenant_id: str, key: str, request_fingerprint: str) -> dict[str, Any] | None:
    """The stored response for this key, None if new; 409 if the key was used for another request."""
    lock(session, tenant_id, key)
    row = session.get(IdempotencyKey, (tenant_id, key))
    if row is None:
        return None
    if row.fingerprint != request_fingerprint:
        raise Conflict(f"Idempotency-Key {key!r} was already used with a different request body; "
                       "use a new key for a new request.", param="Idempotency-Key",
                       code="idempotency_key_reused", headers={"x-should-retry": "false"})
    return row.response


def remember(session: Session, tenant_id: str, key: str, request_fingerprint: str, response: dict[str, Any]) -> None:
    session.add(IdempotencyKey(tenant_id=tenant_id, key=key, fingerprint=request_fingerprint, status_code=200,
                               response=response))
    session.flush()

