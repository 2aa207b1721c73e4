from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin


class TenantLimits(TimestampedMixin, Base):
    """Per-tenant quotas set by an operator; a NULL column means the deployment default."""

    __tablename__ = "tenant_limits"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    max_running_jobs: Mapped[int | None] = mapped_column(Integer)
    max_queued_jobs: Mapped[int | None] = mapped_column(Integer)
    max_storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_upload_bytes: Mapped[int | None] = mapped_column(BigInteger)
    requests_per_second: Mapped[float | None] = mapped_column(Float)
