from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, String, Text, false, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, OrderedMixin, TimestampedMixin, utcnow


class WebhookEndpoint(TimestampedMixin, OrderedMixin, Base):
    """A URL a tenant registered for job events (OpenAI's `webhook_endpoint`). The signing secret is
    kept to sign every delivery; the API shows it once, at creation or rotation. After a rotation the
    previous secret signs too (a second signature) until `previous_secret_expires_at`, so receivers
    switch without dropping events. A `disabled` endpoint gets no new deliveries and its pending ones
    wait until it is enabled again."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    secret: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
