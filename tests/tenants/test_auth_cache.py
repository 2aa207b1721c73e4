"""The API's per-process cache of API key -> tenant + request rate (app/tenants/auth.py), through the real app,
database and Redis: a cache hit does no query of its own, and a revoked key or a changed limit is in force on
the very next request once the admin call has returned."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import event, update

from app.core.db import get_engine, session_scope
from app.core.security import hash_api_key
from app.models import ApiKey
from app.models.base import utcnow
from app.tenants import auth
from app.tenants.service import create_api_key, list_api_keys, revoke_api_key
from tests.api.helpers import assert_error
from tests.api.helpers import auth as bearer

MISSING_JOB = "/v1/fine_tuning/jobs/ftjob-not-there"  # one SELECT in the endpoint, answered 404


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement this process sends while the test runs."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    event.listen(get_engine(), "before_cursor_execute", record)
    yield seen
    event.remove(get_engine(), "before_cursor_execute", record)


@pytest.fixture
def listening(client) -> auth.CredentialCache:
    """The cache once its Redis listener is subscribed (it caches nothing before)."""
    auth.CACHE.start()
    deadline = time.monotonic() + 30
    while not auth.CACHE.listening:
        assert time.monotonic() < deadline, "the credential listener never subscribed"
        time.sleep(0.05)
    return auth.CACHE


@pytest.fixture
def admin_key() -> str:
    with session_scope() as db:
        return create_api_key(db, None, role="admin")


def _key_id(tenant_id: str) -> str:
    with session_scope() as db:
        return list_api_keys(db, tenant_id)[0].id


def test_cache_hit_makes_no_query_of_its_own(client, tenant, listening, statements):
    _, key = tenant
    assert client.get(MISSING_JOB, headers=bearer(key)).status_code == 404  # miss: reads the key
    assert any("api_keys" in s for s in statements)
    statements.clear()
    for _ in range(3):
        assert client.get(MISSING_JOB, headers=bearer(key)).status_code == 404
    assert len(statements) == 3 and all("FROM jobs" in s for s in statements), statements


def test_miss_reads_key_tenant_and_limits_in_one_statement(client, tenant, listening, statements):
    _, key = tenant
    listening.drop()
    assert client.get(MISSING_JOB, headers=bearer(key)).status_code == 404
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2, reads  # the key (joined with its tenant and limits), then the job
    assert all(t in reads[0] for t in ("api_keys", "tenants", "tenant_limits"))


def test_revoked_key_fails_on_the_next_request(client, tenant, listening, admin_key):
    tenant_id, key = tenant
    assert client.get(MISSING_JOB, headers=bearer(key)).status_code == 404
    assert auth.CACHE.get(hash_api_key(key)) is not None
    revoked = client.post(f"/v1/admin/keys/{_key_id(tenant_id)}/revoke", headers=bearer(admin_key))
    assert revoked.status_code == 200, revoked.text
    assert_error(client.get(MISSING_JOB, headers=bearer(key)), 401, "Incorrect API key")


def test_key_revoked_by_a_command_fails_on_the_next_request(client, tenant, listening):
    """`tuneforge tenants revoke-key` commits in its own session; the commit announces it."""
    tenant_id, key = tenant
    second = _second_key(tenant_id)
    for k in (key, second):
        assert client.get(MISSING_JOB, headers=bearer(k)).status_code == 404
    with session_scope() as db:
        revoke_api_key(db, _key_id(tenant_id))
    assert_error(client.get(MISSING_JOB, headers=bearer(key)), 401)
    assert client.get(MISSING_JOB, headers=bearer(second)).status_code == 404  # the tenant's other key works


def _second_key(tenant_id: str) -> str:
    with session_scope() as db:
        return create_api_key(db, tenant_id)


def test_limit_change_takes_effect_on_the_next_request(client, tenant, listening, admin_key):
    tenant_id, key = tenant
    for _ in range(4):
        assert client.get(MISSING_JOB, headers=bearer(key)).status_code == 404
    limits = f"/v1/admin/tenants/{tenant_id}/limits"
    assert client.post(limits, headers=bearer(admin_key), json={"requests_per_second": 1}).status_code == 200
    codes = _burst(client, key, 4)
    assert 429 in codes and codes.count(404) <= 2, codes  # 1 a second (2 if the burst crosses a second)
    assert client.post(limits, headers=bearer(admin_key), json={"requests_per_second": None}).status_code == 200
    assert _burst(client, key, 4) == [404] * 4


def _burst(client, key: str, n: int) -> list[int]:
    return [client.get(MISSING_JOB, headers=bearer(key)).status_code for _ in range(n)]


def test_change_nobody_announced_lasts_at_most_the_cache_lifetime(client, tenant, listening, monkeypatch):
    """A row changed in SQL by hand (no announcement) is seen once the entry expires."""
    tenant_id, key = tenant
    monkeypatch.setattr(listening, "seconds", 1.0)
    assert client.get(MISSING_JOB, headers=bearer(key)).status_code == 404
    with session_scope() as db:
        db.execute(update(ApiKey).where(ApiKey.tenant_id == tenant_id).values(revoked_at=utcnow()))
    revoked_at = time.monotonic()
    while client.get(MISSING_JOB, headers=bearer(key)).status_code != 401:
        assert time.monotonic() - revoked_at < 1.0 + 2, "a cached key outlived the cache lifetime"
        time.sleep(0.05)


def test_an_entry_read_before_a_drop_is_not_stored_after_it():
    """A request that read the rows before a change was announced must not cache them after."""
    cache = auth.CredentialCache()
    cache.drop(listening=True)
    principal = auth.Principal("key-1", "tenant", "tenant-1", "t", None)
    before = cache.generation
    cache.drop()
    cache.put("digest", principal, before)
    assert cache.get("digest") is None
    cache.put("digest", principal, cache.generation)
    assert cache.get("digest") == principal
    cache.drop(listening=False)
    cache.put("digest", principal, cache.generation)  # not listening: changes could not be heard
    assert cache.get("digest") is None
