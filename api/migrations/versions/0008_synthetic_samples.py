"""synthetic samples: a dataset's sample may be a DP synthetic table (its ε), each synthesis
with its charge and fidelity report, and the part of a population's spending on samples

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 04:00:00.000000

Datasets from before keep their organizer's file as their sample (not synthetic, no ε).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sample_synthetic", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("sample_epsilon", sa.Double(), nullable=True))
    with op.batch_alter_table("populations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("samples_spent_units", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "syntheses",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("epsilon", sa.Double(), nullable=False),
        sa.Column("charge_units", sa.BigInteger(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("charged", sa.Boolean(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("syntheses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_syntheses_dataset_id"), ["dataset_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("syntheses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_syntheses_dataset_id"))
    op.drop_table("syntheses")
    with op.batch_alter_table("populations", schema=None) as batch_op:
        batch_op.drop_column("samples_spent_units")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("sample_epsilon")
        batch_op.drop_column("sample_synthetic")
