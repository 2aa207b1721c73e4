"""base_models.kind: encoder, seq2seq or decoder, inferred from config.json when the model is registered.

Models registered before this revision were all encoders (nothing else could train), so the default fills them.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("base_models", sa.Column("kind", sa.String(length=16), server_default="encoder", nullable=False))


def downgrade() -> None:
    op.drop_column("base_models", "kind")
