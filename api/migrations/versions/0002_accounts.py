"""accounts: tokens table, passwords, identity

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 00:42:32.850271
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    # Each user's one token (from 0001) becomes a row of its own, still valid.
    op.execute(
        "INSERT INTO api_tokens (id, user_id, token_hash, label, created_at) "
        "SELECT id, id, token_hash, 'created with the account', created_at FROM users"
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("identity_verified", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.drop_column("token_hash")


def downgrade() -> None:
    """Back to one token per user: the oldest live one (users without one keep a dead hash)."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_hash", sa.VARCHAR(length=64), nullable=True))
    op.execute(
        "UPDATE users SET token_hash = COALESCE((SELECT t.token_hash FROM api_tokens t "
        "WHERE t.user_id = users.id AND t.revoked_at IS NULL ORDER BY t.created_at LIMIT 1), "
        "'revoked-' || users.id)"
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("token_hash", nullable=False)
        batch_op.create_unique_constraint("uq_users_token_hash", ["token_hash"])
        batch_op.drop_column("identity_verified")
        batch_op.drop_column("password_hash")

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))

    op.drop_table("api_tokens")
