"""Authentication as ASGI middleware, so it runs before any body is read or validated."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.db import session_scope
from app.core.errors import Unauthorized
from app.tenants.limits import QuotaExceeded, check_rate, limits_for
from app.tenants.service import authenticate

PUBLIC_PATHS = {"/healthz", "/metrics", "/docs", "/openapi.json", "/redoc"}


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _lookup(key: str) -> tuple[str, str] | None:
    """The key's tenant, after charging this request to its rate limit."""
    with session_scope() as session:
        tenant = authenticate(session, key)
        if tenant is None:
            return None
        check_rate(tenant.id, limits_for(session, tenant.id).requests_per_second)
        return tenant.id, tenant.name


class AuthMiddleware:
    """Resolve `Authorization: Bearer KEY` to a tenant id stored in `scope["state"]`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        key = _bearer(scope)
        try:
            found = await run_in_threadpool(_lookup, key) if key else None
        except QuotaExceeded as exc:
            response = JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
            return await response(scope, receive, send)
        if found is None:
            error = Unauthorized(
                "Missing API key: send 'Authorization: Bearer <key>'."
                if key is None
                else "Incorrect API key provided. Create one with 'tuneforge tenants create NAME'."
            )
            response = JSONResponse(error.body(), status_code=error.status_code)
            return await response(scope, receive, send)
        scope.setdefault("state", {})
        scope["state"]["tenant_id"], scope["state"]["tenant_name"] = found
        await self.app(scope, receive, send)
