"""Who is looking at the dashboard: the tenant whose API key the login form stored in a cookie.

A browser cannot add `Authorization: Bearer` to a page load, an `<img>` or an `EventSource`, but it sends
a same-origin cookie with each of them. So the key lives in one cookie, `HttpOnly` (no script reads it),
`SameSite=Strict` (no other site's page can make the browser send it), `Path=/ui` (the API under /v1
still wants the header) and `Secure` over https; it never appears in a URL, and the browser forgets it
when it closes or on "log out". Every request checks the key again exactly as AuthMiddleware does (a
revoked key stops working at once, requests count against the tenant's rate limit, admin keys are
refused), and every object is then looked up within that tenant, as the API does.
"""
from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import Response

from app.api.deps import CurrentTenant
from app.core.errors import Forbidden, Unauthorized
from app.tenants.auth import lookup_key

COOKIE = "tuneforge_ui_key"
PATH = "/ui"


class LoginRequired(Unauthorized):
    """No key cookie, or its key no longer works: the page sends the browser to the login form."""

    def __init__(self) -> None:
        super().__init__("Open the dashboard with a tenant's API key at /ui/login.")


def tenant_for_key(key: str) -> CurrentTenant:
    """The tenant a key belongs to; LoginRequired for an unknown key, Forbidden for an admin key."""
    found = lookup_key(key, admin_path=False) if key else None
    if found is None:
        raise LoginRequired()
    return CurrentTenant(found["tenant_id"], found["tenant_name"])


def cookie_tenant(request: Request) -> CurrentTenant:
    """The dashboard's TenantDep (runs in a worker thread: it reads the database)."""
    tenant = tenant_for_key(request.cookies.get(COOKIE, ""))
    request.state.tenant_id, request.state.tenant_name = tenant.id, tenant.name  # for the log context
    return tenant


UiTenantDep = Annotated[CurrentTenant, Depends(cookie_tenant)]


def check_same_origin(request: Request) -> None:
    """Refuse a login form posted from another site (it would sign the browser in to someone else's key)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):  # "null" (a sandboxed frame) too
        raise Forbidden("The dashboard's login form must be posted from the dashboard itself.")


def remember_key(response: Response, request: Request, key: str) -> None:
    response.set_cookie(COOKIE, key, path=PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def forget_key(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
