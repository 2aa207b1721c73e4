from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin


class BaseModel(TimestampedMixin, Base):
    """One shared copy of a pretrained model on disk; `tenant_id` set means tenant-private."""

    __tablename__ = "base_models"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    architecture: Mapped[str] = mapped_column(String(128))
    # encoder | seq2seq | decoder (app.base_models.kinds): which methods accept the model
    kind: Mapped[str] = mapped_column(String(16), default="encoder", server_default="encoder")
    owned_by: Mapped[str] = mapped_column(String(128), default="tuneforge")
