"""Authentication as ASGI middleware, so it runs before any body is read or validated."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response
from app.core.db import session_scope
from app.core.errors import AppError, Forbidden, ServiceUnavailable, Unauthorized, unavailable_database
from app.models import Tenant
from app.tenants.limits import check_rate, limits_for
from app.tenants.service import authenticate_key

PUBLIC_PATHS = {"/healthz", "/metrics", "/docs", "/openapi.json", "/redoc"}
# the dashboard: a browser cannot send the Bearer header, so its routes check their key cookie themselves
COOKIE_AUTH_PREFIX = "/ui"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


ADMIN_PREFIX = "/v1/admin"


def _cookie_authenticated(path: str) -> bool:
    return path == COOKIE_AUTH_PREFIX or path.startswith(COOKIE_AUTH_PREFIX + "/")


def lookup_key(key: str, admin_path: bool) -> dict[str, str] | None:
    """Who the key is, after charging a tenant's request to its rate limit; None if unknown."""
    with session_scope() as session:
        row = authenticate_key(session, key)
        if row is None:
            return None
        if admin_path and row.role != "admin":
            raise Forbidden("This endpoint needs an admin key (tuneforge admin create-key); tenant keys cannot use it.")
        if not admin_path and row.role != "tenant":
            raise Forbidden("Admin keys manage tenants under /v1/admin; use a tenant's key for this endpoint.")
        if row.role == "admin":
            return {"admin_key_id": row.id}
        tenant = session.get(Tenant, row.tenant_id)
        check_rate(tenant.id, limits_for(session, tenant.id).requests_per_second)
        return {"tenant_id": tenant.id, "tenant_name": tenant.name}


class AuthMiddleware:
    """Resolve `Authorization: Bearer KEY` to a tenant (or, under /v1/admin, an operator)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or _cookie_authenticated(scope["path"]):
            return await self.app(scope, receive, send)
        key = _bearer(scope)
        admin_path = scope["path"].startswith(ADMIN_PREFIX)
        try:
            found = await run_in_threadpool(lookup_key, key, admin_path) if key else None
            if found is None:
                raise Unauthorized(
                    "Missing API key: send 'Authorization: Bearer <key>'." if key is None
                    else "Incorrect API key provided. Create one with 'tuneforge tenants create NAME'.")
        except AppError as exc:
            return await error_response(exc)(scope, receive, send)
        except Exception as exc:
            if not unavailable_database(exc):
                raise
            return await error_response(ServiceUnavailable())(scope, receive, send)
        scope.setdefault("state", {}).update(found)
        await self.app(scope, receive, send)
