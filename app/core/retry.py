"""Database writes from background work (the worker, the maintenance loop) survive a PostgreSQL
restart: each runs in its own transaction, retried with backoff on connection failures."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app.core.db import session_scope

T = TypeVar("T")
log = logging.getLogger(__name__)


def with_db(fn: Callable[[Session], T], attempts: int = 8, first_delay: float = 0.25) -> T:
    """Run `fn(session)` in its own transaction, retrying connection failures with backoff."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            with session_scope() as session:
                return fn(session)
        except DBAPIError as exc:
            transient = isinstance(exc, OperationalError) or exc.connection_invalidated
            if attempt == attempts or not transient:
                raise
            log.warning("database write failed (attempt %d/%d): %s", attempt, attempts, exc)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise RuntimeError("unreachable")
