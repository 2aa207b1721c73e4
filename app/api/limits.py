"""Size and speed limits (and NUL bytes) enforced as bytes arrive, before anything is parsed or stored."""
from __future__ import annotations

import asyncio
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.core.config import get_settings
from app.core.errors import AppError, BadRequest, PayloadTooLarge, RequestTimeout

JSON_BODY_LIMIT = 1024 * 1024
MULTIPART_OVERHEAD = 1024 * 1024


class HeadersTooLarge(AppError):
    status_code = 431
    code = "headers_too_large"


def body_limit(scope: Scope) -> int:
    if scope["path"].rstrip("/") == "/v1/files" and scope["method"] == "POST":
        return get_settings().max_upload_bytes + MULTIPART_OVERHEAD
    return JSON_BODY_LIMIT


def _refusal(error: AppError) -> JSONResponse:
    """Close the connection too: the rest of the body, if any, will never be read."""
    return error_response(error, Connection="close")


def _too_slow(received: int, elapsed: float) -> RequestTimeout:
    settings = get_settings()
    return RequestTimeout(f"The request body arrived too slowly ({received} bytes in {elapsed:.1f} s); send it at "
                          f"least at {settings.body_min_rate:g} bytes/s, without pauses over "
                          f"{settings.body_idle_timeout:g} s.")


def _has_nul(scope: Scope) -> bool:
    raw = scope.get("raw_path") or scope["path"].encode()
    return b"\x00" in scope["path"].encode() or b"%00" in raw.lower() or b"%00" in scope.get("query_string", b"")


class LimitsMiddleware:
    """431 for oversize headers; 413 for bodies over the limit, by Content-Length or by counting;
    408 for bodies that pause longer than body_idle_timeout or average under body_min_rate (slowloris)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header_bytes = sum(len(k) + len(v) for k, v in scope["headers"])
        limit = body_limit(scope)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        error: AppError | None = None
        if _has_nul(scope):
            error = BadRequest("NUL characters (%00) are not allowed in paths or query strings.")
        elif header_bytes > get_settings().max_header_bytes:
            error = HeadersTooLarge(f"Request headers total {header_bytes} bytes; the limit is "
                                    f"{get_settings().max_header_bytes}.")
        elif declared is not None and (not declared.isdigit() or int(declared) > limit):
            error = PayloadTooLarge(f"Request body of {declared.decode(errors='replace')} bytes exceeds the "
                                    f"limit of {limit} bytes.")
        if error is not None:
            return await _refusal(error)(scope, receive, send)
        idle, rate = get_settings().body_idle_timeout, get_settings().body_min_rate
        received = 0
        started: float | None = None
        body_done = False
        cut_off: AppError | None = None  # set once the body was refused; the app's own answer is then replaced
        responded = replaced = False

        async def limited_receive() -> Message:
            nonlocal received, started, body_done, cut_off
            if body_done:  # later calls only wait for a disconnect (streaming responses): no deadline
                return await receive()
            started = started or time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), idle)
            except TimeoutError:
                cut_off = _too_slow(received, time.monotonic() - started)
                raise cut_off from None
            if message["type"] != "http.request":
                body_done = True
                return message
            received += len(message.get("body", b""))
            body_done = not message.get("more_body", False)
            elapsed = time.monotonic() - started
            if received > limit:
                cut_off = PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
            elif not body_done and elapsed > idle and received < rate * elapsed:
                cut_off = _too_slow(received, elapsed)
            if cut_off is not None:
                raise cut_off
            return message

        async def guarded_send(message: Message) -> None:
            """Once the body was refused, whatever the app answers instead (FastAPI turns an error raised
            while it parses a form into a generic 400) is replaced by the refusal itself."""
            nonlocal responded, replaced
            if replaced:
                return
            if cut_off is not None and not responded:
                replaced = responded = True
                return await _refusal(cut_off)(scope, receive, send)
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if cut_off is None or responded:
                raise
            responded = replaced = True
            await _refusal(cut_off)(scope, receive, send)
