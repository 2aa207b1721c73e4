"""Strings PostgreSQL cannot store: NUL characters and lone UTF-16 surrogates (valid JSON escapes
both). Checked at the edge so they are a 400, not a database error."""
from __future__ import annotations

from typing import Any


def storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def all_storable(value: Any) -> bool:
    """True when every string (keys included) inside a parsed JSON value is storable."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(all_storable(k) and all_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(all_storable(v) for v in value)
    return True
