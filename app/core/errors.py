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


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


def shown(value: object, limit: int = 80) -> str:
    """A user-supplied value quoted for an error message, cut so hostile input cannot flood it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "…'"
