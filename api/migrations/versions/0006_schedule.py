"""schedule: each full-data job's public block time and length, and when a worker took it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 02:30:00.000000

Jobs from before keep a zero schedule: their contestant view shows their true state, as it
did when they ran.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("block_seconds", sa.Double(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("schedule_seconds", sa.Double(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("started_at")
        batch_op.drop_column("schedule_seconds")
        batch_op.drop_column("block_seconds")
