"""contests: rounds with dates, licences, team admission; datasets and teams join a contest

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:54:37.970863
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contest_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contest_id"],
            ["contests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contest_id", "number"),
    )
    op.create_table(
        "licences",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=32), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_licences_team_id"), ["team_id"], unique=False)

    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contest_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key("fk_datasets_contest_id", "contests", ["contest_id"], ["id"])

    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contest_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key("fk_teams_contest_id", "contests", ["contest_id"], ["id"])
    _adopt_existing()


def _adopt_existing() -> None:
    """Teams and datasets from before contests existed join a contest named 'default' whose
    rounds are open for a year; its teams keep the full-data access they had (admitted), but
    now also need an approved licence and verified identities."""
    connection = op.get_bind()
    teams = connection.execute(sa.text("SELECT count(*) FROM teams")).scalar_one()
    datasets = connection.execute(sa.text("SELECT count(*) FROM datasets")).scalar_one()
    if not teams and not datasets:
        return
    now = datetime.now(UTC)
    contest = uuid.uuid4().hex
    connection.execute(
        sa.text("INSERT INTO contests (id, name, description, created_at) "
                "VALUES (:id, 'default', 'teams and datasets from before contests', :now)"),
        {"id": contest, "now": now},
    )  # fmt: skip
    for number in (1, 2):
        connection.execute(
            sa.text("INSERT INTO rounds (contest_id, number, opens_at, closes_at) "
                    "VALUES (:contest, :number, :now, :later)"),
            {"contest": contest, "number": number, "now": now,
             "later": now + timedelta(days=365)},
        )  # fmt: skip
    connection.execute(sa.text("UPDATE teams SET contest_id = :c, admitted_at = :now"),
                       {"c": contest, "now": now})  # fmt: skip
    connection.execute(sa.text("UPDATE datasets SET contest_id = :c"), {"c": contest})


def downgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_constraint("fk_teams_contest_id", type_="foreignkey")
        batch_op.drop_column("admitted_at")
        batch_op.drop_column("contest_id")

    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_constraint("fk_datasets_contest_id", type_="foreignkey")
        batch_op.drop_column("contest_id")

    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licences_team_id"))

    op.drop_table("licences")
    op.drop_table("rounds")
    op.drop_table("contests")
