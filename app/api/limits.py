"""Size limits (and NUL bytes) enforced as bytes arrive, before anything is parsed or stored."""
from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import get_settings
from app.core.errors import AppError, BadRequest, PayloadTooLarge

JSON_BODY_LIMIT = 1024 * 1024
MULTIPART_OVERHEAD = 1024 * 1024


class HeadersTooLarge(AppError):
    status_code = 431
    code = "headers_too_large"


def body_limit(scope: Scope) -> int:
    if scope["path"].rstrip("/") == "/v1/files" and scope["method"] == "POST":
        return get_settings().max_upload_bytes + MULTIPART_OVERHEAD
    return JSON_BODY_LIMIT


def _has_nul(scope: Scope) -> bool:
    raw = scope.get("raw_path") or scope["path"].encode()
    return b"\x00" in scope["path"].encode() or b"%00" in raw.lower() or b"%00" in scope.get("query_string", b"")


class LimitsMiddleware:
    """431 for oversize headers; 413 for bodies over the limit, by Content-Length or by counting."""

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
            response = JSONResponse(error.body(), status_code=error.status_code, headers={"Connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
            return message

        await self.app(scope, counting_receive, send)
