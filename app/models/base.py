"""Shared column helpers for every table."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Identity, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class TimestampedMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), default=utcnow)


class OrderedMixin:
    """A monotonically increasing sequence number: the stable order behind cursor pagination."""

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True, index=True)


__all__ = ["Base", "TimestampedMixin", "OrderedMixin", "utcnow"]
