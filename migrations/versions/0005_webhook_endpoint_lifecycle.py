"""Webhook endpoints change after registration: `updated_at`, `disabled` (no new deliveries while set),
the previous signing secret and when it stops signing (secret rotation with an overlap window), and
deliveries that belong to no job (test pings).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("updated_at", sa.DateTime(timezone=True),
                                                 server_default=sa.text("now()"), nullable=False))
    op.execute("UPDATE webhook_endpoints SET updated_at = created_at")
    op.add_column("webhook_endpoints", sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("webhook_endpoints", sa.Column("previous_secret", sa.String(length=128), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True),
                                                 nullable=True))
    op.alter_column("webhook_deliveries", "job_id", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM webhook_deliveries WHERE job_id IS NULL")  # test pings: no job to name
    op.alter_column("webhook_deliveries", "job_id", existing_type=sa.String(length=64), nullable=False)
    for column in ("previous_secret_expires_at", "previous_secret", "disabled", "updated_at"):
        op.drop_column("webhook_endpoints", column)
