from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, OrderedMixin, TimestampedMixin, WorkerLeaseMixin


class DeliveryStatus(StrEnum):
    """pending → sending → delivered | pending (retry later) | failed (attempts used up)."""

    pending = "pending"
    sending = "sending"
    delivered = "delivered"
    failed = "failed"


class WebhookDelivery(TimestampedMixin, OrderedMixin, WorkerLeaseMixin, Base):
    """The outbox: one event for one endpoint, written in the transaction that ended the job, so a
    terminal state is never committed without its deliveries. `body` is the exact JSON sent (and
    signed) on every attempt; `id` is the `webhook-id` header, the receiver's idempotency key. A test
    ping (POST …/test) is a delivery of no job."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)  # None: a test ping
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
