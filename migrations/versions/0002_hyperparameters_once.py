"""Hyper-parameters are stored once: inside `method.<type>.hyperparameters`, resolved at submission
(nested methods carry their own there too); the jobs.hyperparameters column goes.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

METHOD_HP = "method -> (method ->> 'type') -> 'hyperparameters'"


def upgrade() -> None:
    # every resolved value the column held (max_length, warmup_ratio, …) moves into the method
    op.execute(f"""
        UPDATE jobs SET method = jsonb_set(method, ARRAY[method ->> 'type', 'hyperparameters'],
                                           (hyperparameters - 'seed') || coalesce({METHOD_HP}, '{{}}'::jsonb))
    """)
    op.drop_column("jobs", "hyperparameters")


def downgrade() -> None:
    op.add_column("jobs", sa.Column("hyperparameters", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.execute(f"UPDATE jobs SET hyperparameters = {METHOD_HP} || jsonb_build_object('seed', seed)")
    op.alter_column("jobs", "hyperparameters", nullable=False)
