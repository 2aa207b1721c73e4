"""The one exception the client raises, so a command (or a script) catches one type and shows one line."""
from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """A request that did not succeed: the server's OpenAI-style error (`status_code`, `type`, `code`,
    `param`, `message`) or, with `status_code` None, a problem before an answer (unreachable server,
    bad local input, a download that failed its checksum)."""

    def __init__(self, message: str, *, status_code: int | None = None, type: str | None = None,
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message, self.status_code, self.type, self.code, self.param = message, status_code, type, code, param

    @classmethod
    def from_response(cls, status_code: int, body: Any, fallback: str) -> ClientError:
        """From an error answer: its `{"error": {...}}` body when it has one, else `fallback` (the raw text)."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(fallback.strip()[:300] or f"HTTP {status_code}", status_code=status_code)
        return cls(str(error.get("message") or f"HTTP {status_code}"), status_code=status_code,
                   type=error.get("type"), code=error.get("code"), param=error.get("param"))

    def __str__(self) -> str:
        if self.status_code is None:
            return self.message
        where = f" on {self.param}" if self.param else ""
        return f"{self.status_code} {self.code or self.type or 'error'}{where}: {self.message}"
