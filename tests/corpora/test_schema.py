"""Migration 0006 creates exactly what the Corpus model declares (Alembic's autogenerate finds nothing)
and the indexes it names."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.core.db import get_engine
from app.models import Base
from tests.webhooks.test_schema import _table


def test_the_migration_matches_the_model(database):
    with get_engine().connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert [d for d in diffs if _table(d) == "corpora" or "corpora" in repr(d)] == []
    assert {i["name"] for i in inspect(get_engine()).get_indexes("corpora")} == {
        "ix_corpora_tenant_id", "ix_corpora_shared", "ix_corpora_seq"}
