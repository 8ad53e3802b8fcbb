"""token expiry and login throttling

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 07:00:00.000000

Every person's token gets an expiry: tokens issued before this migration expire the default
lifetime (``UNSEEN_TOKEN_DAYS``, 30 days) after it runs; a data node's credential keeps none.
Failed logins are counted in a table of their own, shared by all of a server's API processes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    days = float(os.environ.get("UNSEEN_TOKEN_DAYS", "30"))
    tokens = sa.table(
        "api_tokens", sa.column("user_id", sa.String), sa.column("expires_at", sa.DateTime)
    )
    users = sa.table("users", sa.column("id", sa.String), sa.column("role", sa.String))
    people = sa.select(users.c.id).where(users.c.role != "node")
    op.get_bind().execute(
        tokens.update()
        .where(tokens.c.user_id.in_(people))
        .values(expires_at=datetime.now(UTC) + timedelta(days=days))
    )
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
