"""One error family, rendered in OpenAI's `{"error": {...}}` shape by one handler."""
from __future__ import annotations

from typing import Any


class AppError(Exception):
    status_code = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(AppError):
    status_code = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class RequestTimeout(AppError):
    status_code = 408
    code = "request_timeout"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class StateConflict(Conflict):
    """A request the resource's state refuses (cancel a finished job, resume a running one): retrying
    the same request cannot help, so it says `x-should-retry: false` (the official client retries 409s)."""

    def __init__(self, message: str, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.headers = {"x-should-retry": "false", **self.headers}


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class ServiceUnavailable(AppError):
    """A dependency (PostgreSQL) is down for a moment: 503 with Retry-After, which clients retry."""

    status_code = 503
    type = "server_error"
    code = "database_unavailable"

    def __init__(self, message: str = "The database is unavailable for a moment; retry in a few seconds.",
                 retry_after: int = 2):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def unavailable_database(exc: BaseException) -> bool:
    """True for a lost or refused PostgreSQL connection (not for a bad query)."""
    from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError

    if isinstance(exc, (OperationalError, TimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def shown(value: object, limit: int = 80) -> str:
    """A user-supplied value quoted for an error message, cut so hostile input cannot flood it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "…'"
