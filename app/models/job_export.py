from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin, WorkerLeaseMixin


class ExportStatus(StrEnum):
    """queued → running → succeeded | failed; a failed (or abandoned) export may be queued again."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class JobExport(TimestampedMixin, WorkerLeaseMixin, Base):
    """A job's merged full-weights export: at most one per job (a repeated request finds this row).
    Its files are Artifact rows of the job named `merged/…`, written in the same transaction as
    `succeeded`, so none is listed before all are complete."""

    __tablename__ = "job_exports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
