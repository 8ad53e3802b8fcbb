"""token lifetimes set by organizers

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 07:40:00.000000

One row (``id`` 1) holding the default and maximum lifetime of a new token, written when an
organizer first sets them; until then the server's settings (``UNSEEN_TOKEN_DAYS``,
``UNSEEN_TOKEN_MAX_DAYS``) apply, so the migration writes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_policy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("default_seconds", sa.BigInteger(), nullable=False),
        sa.Column("max_seconds", sa.BigInteger(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("token_policy")
