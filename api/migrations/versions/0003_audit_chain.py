"""audit chain: each entry carries its sequence number, the previous hash and its own

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 00:50:00

Entries written before this revision are chained now, in the order they were written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from api.audit_log import GENESIS, entry_hash

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))

    connection = op.get_bind()
    events = sa.table(
        "audit_events",
        sa.column("id", sa.Integer()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("detail", sa.JSON()),
        sa.column("seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    previous, seq = GENESIS, 0
    rows = connection.execute(
        sa.select(
            events.c.id, events.c.at, events.c.actor, events.c.action, events.c.detail
        ).order_by(events.c.id)
    ).all()
    for row in rows:
        seq += 1
        digest = entry_hash(seq, row.at, row.actor, row.action, row.detail, previous)
        connection.execute(
            events.update()
            .where(events.c.id == row.id)
            .values(seq=seq, prev_hash=previous, hash=digest)
        )
        previous = digest
    head = sa.table(
        "audit_head", sa.column("id", sa.Integer()), sa.column("seq", sa.BigInteger()),
        sa.column("hash", sa.String()),
    )  # fmt: skip
    connection.execute(head.insert().values(id=1, seq=seq, hash=previous))

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_audit_events_seq", ["seq"])


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_events_seq", type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    op.drop_table("audit_head")
