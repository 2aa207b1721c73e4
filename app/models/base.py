"""Shared column helpers for every table."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Identity, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class TimestampedMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), default=utcnow)


class OrderedMixin:
    """A monotonically increasing sequence number: the stable order behind cursor pagination."""

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True, index=True)


class WorkerLeaseMixin:
    """Work a worker claims and holds: the attempt count, who holds it (and their heartbeat), and
    when it was sent, started and finished. Jobs and exports both run this way."""

    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(256))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


__all__ = ["Base", "TimestampedMixin", "OrderedMixin", "WorkerLeaseMixin", "utcnow"]
