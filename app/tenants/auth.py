"""Authentication as ASGI middleware, so it runs before any body is read or validated.

Each API process keeps who a key is (its tenant and request rate) for CACHE_SECONDS, keyed by the key's
SHA-256 digest (the plain key is never held), so a request served from the cache makes no database query
and no Redis round trip (unless its tenant has a request rate limit: one INCR). A thread per process
listens on Redis for changes (app/tenants/service.AUTH_CHANNEL, published after every committed change
to keys or limits), drops every entry and acknowledges; the admin call waits for those acknowledgements,
so when it returns a revoked key or a changed limit is in force in every API process. While the listener
is not subscribed (Redis away, reconnecting) nothing is cached; a change it cannot hear of (a row edited
in SQL by hand, a half-open connection) lasts at most CACHE_SECONDS.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response
from app.core.db import session_scope
from app.core.errors import AppError, Forbidden, ServiceUnavailable, Unauthorized, unavailable_database
from app.core.queue import get_redis
from app.core.security import hash_api_key
from app.tenants.limits import charge_rate, check_rate_count, effective_limits
from app.tenants.service import AUTH_CHANNEL, ack_list, resolve_key

log = logging.getLogger(__name__)
# bounds how stale an entry can be when no message can tell (a row changed in SQL by hand, a lost message);
# below the 30 s resolution of api_keys.last_used_at, which only misses refresh
CACHE_SECONDS = 10.0
RESUBSCRIBE_SECONDS = 1.0
CACHE_ENTRIES = 10_000
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


@dataclass(frozen=True)
class Principal:
    """Who an active key is: what the middleware needs of it on every request."""

    key_id: str
    role: str
    tenant_id: str | None
    tenant_name: str | None
    requests_per_second: float | None


class CredentialCache:
    """Key digest -> (Principal, expiry), in one process; usable only while `listening` (see the module doc)."""

    def __init__(self, seconds: float = CACHE_SECONDS, entries: int = CACHE_ENTRIES):
        self.seconds, self.entries = seconds, entries
        self._items: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self.generation = 0  # moves on every drop: an entry read before a drop is not stored after it
        self.listening = False
        self._listener: threading.Thread | None = None

    def get(self, digest: str) -> Principal | None:
        item = self._items.get(digest)
        return item[0] if item is not None and item[1] > time.monotonic() else None

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        with self._lock:
            if not self.listening or generation != self.generation:
                return
            if len(self._items) >= self.entries:
                self._items.clear()
            self._items[digest] = (principal, time.monotonic() + self.seconds)

    def drop(self, listening: bool | None = None) -> None:
        """Forget every entry (and, given `listening`, say whether changes can be heard)."""
        with self._lock:
            self.generation += 1
            self._items.clear()
            if listening is not None:
                self.listening = listening

    def start(self) -> None:
        """Start this process's listener once (lazily: uvicorn's workers each start their own)."""
        if self._listener is None or not self._listener.is_alive():
            with self._lock:
                if self._listener is None or not self._listener.is_alive():
                    self._listener = threading.Thread(target=self._listen, name="tuneforge-auth-listener",
                                                      daemon=True)
                    self._listener.start()

    def _listen(self) -> None:
        while True:
            try:
                client = get_redis()
                pubsub = client.pubsub()
                pubsub.subscribe(AUTH_CHANNEL)
                for message in pubsub.listen():
                    if message["type"] == "subscribe":  # also after redis-py reconnects: messages may be lost
                        self.drop(listening=True)
                    elif message["type"] == "message":
                        self.drop()
                        acks = ack_list(message["data"].decode())
                        client.pipeline(transaction=False).rpush(acks, 1).expire(acks, 60).execute()
            except Exception as exc:  # noqa: BLE001 - whatever broke the subscription, cache nothing until back
                self.drop(listening=False)
                log.warning("API key cache off until Redis answers again: %s", exc)
            time.sleep(RESUBSCRIBE_SECONDS)


CACHE = CredentialCache()


def _charged(principal: Principal, admin_path: bool) -> bool:
    return principal.role == "tenant" and not admin_path and principal.requests_per_second is not None


def _charge(principal: Principal) -> int | None:
    """This second's request count of the principal's tenant after this request; None if Redis is away."""
    try:
        return charge_rate(get_redis().pipeline(transaction=False), principal.tenant_id).execute()[0]
    except (redis.RedisError, RuntimeError) as exc:  # a Redis outage must not take the API down: fail open
        log.warning("rate limit not checked, Redis unavailable: %s", exc)
        return None


def _load(digest: str) -> Principal | None:
    """The key's principal from PostgreSQL, in one transaction and one SELECT (plus its use, at most
    every 30 s)."""
    with session_scope() as session:
        found = resolve_key(session, digest)
        if found is None:
            return None
        key, tenant, limits = found
        rate = effective_limits(limits).requests_per_second if key.role == "tenant" else None
        return Principal(key.id, key.role, key.tenant_id, tenant.name if tenant else None, rate)


def _admit(principal: Principal, admin_path: bool, count: int | None) -> dict[str, str]:
    if admin_path and principal.role != "admin":
        raise Forbidden("This endpoint needs an admin key (tuneforge admin create-key); tenant keys cannot use it.")
    if not admin_path and principal.role != "tenant":
        raise Forbidden("Admin keys manage tenants under /v1/admin; use a tenant's key for this endpoint.")
    if principal.role == "admin":
        return {"admin_key_id": principal.key_id}
    check_rate_count(count, principal.requests_per_second)
    return {"tenant_id": principal.tenant_id, "tenant_name": principal.tenant_name}


def cached_lookup(key: str, admin_path: bool) -> dict[str, str] | None:
    """lookup_key's answer when it needs no I/O (a cached key whose tenant has no request rate limit), so
    the middleware gives it without a trip through the thread pool; None when lookup_key must run."""
    principal = CACHE.get(hash_api_key(key))
    if principal is None or _charged(principal, admin_path):
        return None
    return _admit(principal, admin_path, None)


def lookup_key(key: str, admin_path: bool) -> dict[str, str] | None:
    """Who the key is, after charging a tenant's request to its rate limit; None if unknown."""
    CACHE.start()
    digest = hash_api_key(key)
    principal = CACHE.get(digest)
    if principal is None:
        generation = CACHE.generation  # before the read: a change committed during it is not cached over
        principal = _load(digest)
        if principal is None:
            return None
        CACHE.put(digest, principal, generation)
    return _admit(principal, admin_path, _charge(principal) if _charged(principal, admin_path) else None)


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
            found = (cached_lookup(key, admin_path) or await run_in_threadpool(lookup_key, key, admin_path)
                     if key else None)
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
