"""Migration 0004 creates exactly what the webhook models declare (Alembic's autogenerate finds nothing)."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.core.db import get_engine
from app.models import Base

TABLES = {"webhook_endpoints", "webhook_deliveries", "webhook_attempts"}


def _table(diff) -> str | None:
    for part in diff if isinstance(diff, tuple) else diff[0]:
        name = getattr(part, "name", None) if not isinstance(part, str) else None
        table = getattr(part, "table", None)
        if table is not None:
            return table.name
        if name in TABLES:
            return name
    return None


def test_the_migration_matches_the_models(database):
    with get_engine().connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert [d for d in diffs if _table(d) in TABLES] == []
