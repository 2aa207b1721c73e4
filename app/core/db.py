"""SQLAlchemy engine and sessions. Services never commit; the request or the task does."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.core.config import get_settings


class Base(DeclarativeBase):
    pass


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


# `tuneforge api` sets it to 0 for its processes: a ping on every checkout is a round trip on every request.
# Without it a request that meets a connection PostgreSQL dropped answers 503 (retried by clients) and
# SQLAlchemy then replaces every pooled connection; workers and commands keep pinging.
PRE_PING_ENV = "TUNEFORGE_DB_PRE_PING"


@lru_cache
def get_engine() -> Engine:
    url = normalize_url(get_settings().require_database_url())
    pre_ping = os.environ.get(PRE_PING_ENV, "1") != "0"
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=10, max_overflow=20)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work for tasks and CLI commands: commit on success, roll back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
