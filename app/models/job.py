from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, OrderedMixin, TimestampedMixin, WorkerLeaseMixin


class JobStatus(StrEnum):
    """Every state a job can be in (OpenAI's names, plus `pausing`/`paused`); app.jobs.state moves
    a job between them. A StrEnum, so a member compares, binds and serialises as its plain string."""

    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    pausing = "pausing"
    paused = "paused"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_STATUSES = (JobStatus.validating_files, JobStatus.queued, JobStatus.running)
FINAL_STATUSES = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Job(TimestampedMixin, OrderedMixin, WorkerLeaseMixin, Base):
    """A fine-tuning job. PostgreSQL, not the broker, is the truth about its state."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32), index=True)
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[dict[str, Any]] = mapped_column(JSONB)  # resolved wire form; hyper-parameters live here
    seed: Mapped[int] = mapped_column(BigInteger)
    suffix: Mapped[str | None] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(256))
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    flops: Mapped[float | None] = mapped_column(Float)
    result_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # sha256 of the canonical create body: retries without an Idempotency-Key find the first job
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
