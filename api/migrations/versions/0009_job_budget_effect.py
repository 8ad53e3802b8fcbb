"""job budget effect: whether each job's reservation was charged or returned

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 01:00:00.000000

The team sees per job whether its ε was charged or returned (a fact of the lifecycle, the same
the budget shows). Existing jobs take it from their state and the audit log: a failed job whose
reservation came back has its ``budget.returned`` entry; every other finished full-data job was
charged.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHARGED_STATES = ("awaiting_review", "partially_reviewed", "released", "rejected", "failed")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_effect", sa.String(length=8), nullable=True))
    bind = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("state", sa.String),
        sa.column("target", sa.String),
        sa.column("budget_effect", sa.String),
    )
    events = sa.table("audit_events", sa.column("action", sa.String), sa.column("detail", sa.JSON))
    bind.execute(
        jobs.update()
        .where(jobs.c.target == "full", jobs.c.state.in_(CHARGED_STATES))
        .values(budget_effect="commit")
    )
    returned = []
    for (detail,) in bind.execute(
        sa.select(events.c.detail).where(events.c.action == "budget.returned")
    ):
        found = json.loads(detail) if isinstance(detail, str) else detail
        if isinstance(found, dict) and found.get("job"):
            returned.append(str(found["job"]))
    for start in range(0, len(returned), 500):
        bind.execute(
            jobs.update()
            .where(jobs.c.id.in_(returned[start : start + 500]))
            .values(budget_effect="return")
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("budget_effect")
