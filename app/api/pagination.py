"""OpenAI-style cursor pagination: `after` an id, `limit`, `has_more`, newest first."""
from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Query

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.core.errors import BadRequest

T = TypeVar("T")
MAX_LIMIT = 100
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Objects per page, 1-{MAX_LIMIT}.")]


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}.", param="limit")
    return limit


def paginate(session: Session, query: Select[Any], model: Any, after: str | None, limit: int) -> tuple[list[Any], bool]:
    """Rows of `query` (already filtered to the tenant) after cursor `after`, newest first."""
    check_limit(limit)
    if after:
        cursor = session.scalar(query.with_only_columns(model.seq).where(model.id == after))
        if cursor is None:
            raise BadRequest(f"Unknown cursor 'after={after}'.", param="after")
        query = query.where(model.seq < cursor)
    rows = list(session.scalars(query.order_by(model.seq.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


__all__ = ["paginate", "list_body", "check_limit", "select", "Limit"]
