"""Strings PostgreSQL cannot store: NUL characters and lone UTF-16 surrogates (valid JSON escapes
both). Checked at the edge so they are a 400, not a database error."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def utf8(text: str) -> bool:
    """No lone surrogates: the string has a UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> bool:
    return "\x00" not in text and utf8(text)


def all_storable(value: Any, check: Callable[[str], bool] = storable) -> bool:
    """True when every string (keys included) inside a parsed JSON value passes `check` (storable)."""
    if isinstance(value, str):
        return check(value)
    if isinstance(value, dict):
        return all(all_storable(k, check) and all_storable(v, check) for k, v in value.items())
    if isinstance(value, list):
        return all(all_storable(v, check) for v in value)
    return True
