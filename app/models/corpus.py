from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, OrderedMixin, TimestampedMixin, WorkerLeaseMixin


class CorpusStatus(StrEnum):
    """queued → running → ready | failed. The wire shows queued and running as "indexing"; the two are
    kept apart so the lease machinery (app/leases.py) treats a corpus like an export."""

    queued = "queued"
    running = "running"
    ready = "ready"
    failed = "failed"


class Corpus(TimestampedMixin, OrderedMixin, WorkerLeaseMixin, Base):
    """An uploaded corpus file indexed for BM25 search (app/corpora/). The index lives on disk under
    data_dir/corpora/<tenant>/<id>; it outlives the file it was built from. `shared`: an admin made it
    readable (search, TLM retrieval) by every tenant."""

    __tablename__ = "corpora"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32))
    shared: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    documents: Mapped[int | None] = mapped_column(BigInteger)
    indexed_documents: Mapped[int] = mapped_column(BigInteger, default=0)  # progress while indexing
    index_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
