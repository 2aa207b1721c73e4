"""OpenAI-style cursor pagination: `after` an id, `limit`, `has_more`, newest first (or `order=asc`)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, NotFound, shown

T = TypeVar("T")
MAX_LIMIT = 100
Order = Literal["asc", "desc"]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Objects per page, 1-{MAX_LIMIT}.")]


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}.", param="limit")
    return limit


def paginate(session: Session, query: Select[Any], model: Any, after: str | None, limit: int,
             order: Order = "desc") -> tuple[list[Any], bool]:
    """Rows of `query` (already filtered to the tenant) after cursor `after`, newest first unless
    `order` is "asc" (creation order)."""
    check_limit(limit)
    if after:
        cursor = session.scalar(query.with_only_columns(model.seq).where(model.id == after))
        if cursor is None:  # like an unknown id in a path: the object it names does not exist (here)
            raise NotFound(f"Unknown cursor 'after={shown(after)}': no such object in this list; page on "
                           "with the previous page's last_id.", param="after")
        query = query.where(model.seq > cursor if order == "asc" else model.seq < cursor)
    ordering = model.seq.asc() if order == "asc" else model.seq.desc()
    rows = list(session.scalars(query.order_by(ordering).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


__all__ = ["paginate", "list_body", "check_limit", "select", "Limit", "Order"]
