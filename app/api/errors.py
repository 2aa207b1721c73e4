"""Every error, ours or the framework's, leaves in OpenAI's `{"error": {...}}` shape."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.core.errors import AppError, ServiceUnavailable, error_body, unavailable_database

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):  # where it was; a field may be named "query"
        loc = loc[1:]
    param = ".".join(loc) or None
    return f"Invalid {param or 'request'}: {first.get('msg', 'invalid value')}.", param


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope, used for every 4xx/5xx."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "Invalid request"), (401, "Missing or wrong API key"), (403, "Key of the wrong role"), (404, "Not found (or another tenant's)"),
        (405, "Method not allowed"), (408, "Request body sent too slowly"),
        (409, "Conflict with the resource's state or an Idempotency-Key"),
        (413, "Body over the size limit"), (429, "Quota or rate limit exceeded"), (431, "Headers over the size limit"), (500, "Server error"),
        (503, "Dependency unavailable"),
    ]
}


def error_response(error: AppError, **headers: str) -> JSONResponse:
    """The one place an AppError becomes a response (handlers and middlewares alike)."""
    return JSONResponse(error.body(), status_code=error.status_code, headers={**error.headers, **headers})


def allowed_methods(request: Request) -> list[str]:
    """Every method any route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods - {"HEAD"})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(error_body(message, "invalid_request_error", param), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = f"Unknown path: {request.method} {request.url.path}."
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allowed = allowed_methods(request)
            message = f"Method {request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}."
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return JSONResponse(error_body(message, "invalid_request_error"), status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        if unavailable_database(exc):
            log.warning("database unavailable: %s", exc)
            return error_response(ServiceUnavailable())
        log.exception("unhandled error")
        return JSONResponse(error_body("The server had an error while processing your request.", "server_error"),
                            status_code=500)
