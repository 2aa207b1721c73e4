"""Operator endpoints: a separate admin role, key rotation and revocation, limits, audit trail."""
from __future__ import annotations

import pytest

from app.core.db import session_scope
from app.tenants.service import create_api_key
from tests.api.helpers import assert_error, auth


@pytest.fixture
def admin_key(database) -> str:
    with session_scope() as db:
        return create_api_key(db, None, role="admin")


def test_roles_never_cross(client, admin_key, tenant):
    _, tenant_key = tenant
    assert_error(client.get("/v1/admin/audit", headers=auth(tenant_key)), 403, "admin key")
    assert_error(client.get("/v1/files", headers=auth(admin_key)), 403, "tenant's key")
    assert_error(client.get("/v1/admin/audit"), 401, "missing api key")


def test_admin_creates_tenant_rotates_and_revokes_keys(client, admin_key):
    created = client.post("/v1/admin/tenants", headers=auth(admin_key), json={"name": "admin-made"}).json()
    first = created["api_key"]
    assert client.get("/v1/files", headers=auth(first)).status_code == 200
    assert_error(client.post("/v1/admin/tenants", headers=auth(admin_key), json={"name": "admin-made"}), 409)
    assert_error(client.post("/v1/admin/tenants", headers=auth(admin_key), json={"nom": "x"}), 400)
    second = client.post(f"/v1/admin/tenants/{created['id']}/keys", headers=auth(admin_key)).json()["api_key"]
    keys = client.get(f"/v1/admin/tenants/{created['id']}/keys", headers=auth(admin_key)).json()["data"]
    old = next(k for k in keys if first.startswith(k["prefix"]) and k["last_used_at"])
    revoked = client.post(f"/v1/admin/keys/{old['id']}/revoke", headers=auth(admin_key)).json()
    assert revoked["revoked_at"] is not None
    assert_error(client.get("/v1/files", headers=auth(first)), 401, "incorrect api key")
    assert client.get("/v1/files", headers=auth(second)).status_code == 200
    assert_error(client.post("/v1/admin/keys/key-nope/revoke", headers=auth(admin_key)), 404, "no such api key")
    actions = {e["action"] for e in client.get(f"/v1/admin/audit?target={created['id']}",
                                                headers=auth(admin_key)).json()["data"]}
    assert "tenant.created" in actions and "key.used" in actions
    key_events = client.get(f"/v1/admin/audit?target={old['id']}", headers=auth(admin_key)).json()["data"]
    assert {"key.created", "key.revoked"} <= {e["action"] for e in key_events}


def test_admin_sets_limits(client, admin_key, tenant):
    tenant_id, _ = tenant
    base = f"/v1/admin/tenants/{tenant_id}/limits"
    updated = client.post(base, headers=auth(admin_key), json={"max_queued_jobs": 3, "requests_per_second": 50}).json()
    assert updated["max_queued_jobs"] == 3 and updated["requests_per_second"] == 50
    assert client.get(base, headers=auth(admin_key)).json()["max_queued_jobs"] == 3
    reset = client.post(base, headers=auth(admin_key), json={"max_queued_jobs": None}).json()
    assert reset["max_queued_jobs"] is None and reset["requests_per_second"] == 50
    assert_error(client.post(base, headers=auth(admin_key), json={"max_queued_jobs": 0}), 400)
    assert_error(client.get("/v1/admin/tenants/tenant-nope/limits", headers=auth(admin_key)), 404, "no such tenant")


@pytest.mark.parametrize("name", [r"nul\u0000name", r"lone\ud800surrogate", r"tab\tname"])
def test_unstorable_tenant_names_are_400(client, admin_key, name):
    body = ('{"name": "%s"}' % name).encode()  # JSON escapes, as a hostile client sends them
    response = client.post("/v1/admin/tenants", headers={**auth(admin_key), "Content-Type": "application/json"},
                           content=body)
    assert_error(response, 400, "name")


def test_audit_pages_with_after_newest_first(client, admin_key):
    from app.tenants.service import audit

    target = f"page-target-{admin_key[-8:]}"
    with session_scope() as db:
        for i in range(55):
            audit(db, "cli", "test.paged", target, {"i": i})
    first = client.get("/v1/admin/audit", headers=auth(admin_key), params={"target": target}).json()
    assert first["has_more"] is True and [e["data"]["i"] for e in first["data"]] == list(range(54, 4, -1))  # 50
    walked: list[int] = []
    params: dict[str, str | int] = {"target": target, "limit": 20}
    while True:
        page = client.get("/v1/admin/audit", headers=auth(admin_key), params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 20
        walked += [e["data"]["i"] for e in page["data"]]
        if not page["has_more"]:
            break
        params["after"] = page["last_id"]
    assert walked == list(range(54, -1, -1))  # every event once, no gaps, newest first


@pytest.mark.parametrize("after, status", [("999999999999", 404), ("nope", 400), ("99999999999999999999999", 400)])
def test_audit_unknown_cursor_is_4xx(client, admin_key, after, status):
    """A well-formed id no event has is not found, like any list's; anything else is malformed."""
    response = client.get("/v1/admin/audit", headers=auth(admin_key), params={"after": after})
    assert_error(response, status, "unknown cursor", param="after")
    assert_error(client.get("/v1/admin/audit", headers=auth(admin_key), params={"limit": 0}), 400, "limit",
                 param="limit")
