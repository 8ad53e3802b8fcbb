"""populations: budgets per team and population under a contest-wide cap; content hashes

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-12 09:00:00.000000

Every existing dataset becomes its own population (named after it, its contest's), and each
team's ledger on the dataset becomes its ledger on that population, spent and reserved as
they were. The contest-wide cap is the larger of what today's teams could spend together (the
sum of their caps, or of what they used where a cap was lowered below it) and the default of a
new registration (ε = 100, δ = 1e-5): no team loses anything it had. Datasets registered
before have no content hash (their sources were not kept).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: The defaults of a new registration (api.schemas.NewDataset), frozen here as of 0005.
DEFAULT_CAP_UNITS = 100 * 10**6
DEFAULT_DELTA_CAP_UNITS = 10**10  # 1e-5 in femto-δ

LEDGER = ("cap_units", "spent_units", "reserved_units", "delta_cap_units",
          "delta_spent_units", "delta_reserved_units")  # fmt: skip


def _budgets_table(key: str, target: str) -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column(key, sa.String(length=32), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in LEDGER),
        sa.ForeignKeyConstraint([key], [f"{target}.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", key),
    )


def upgrade() -> None:
    op.create_table(
        "populations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("contest_id", sa.String(length=32), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in LEDGER),
        sa.Column("team_cap_units", sa.BigInteger(), nullable=False),
        sa.Column("team_delta_cap_units", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contest_id"], ["contests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    connection = op.get_bind()
    datasets = connection.execute(sa.text(
        "SELECT id, name, contest_id, team_cap_units, team_delta_cap_units FROM datasets"
    )).all()  # fmt: skip
    budgets = connection.execute(sa.text(
        f"SELECT team_id, dataset_id, {', '.join(LEDGER)} FROM budgets"
    )).mappings().all()  # fmt: skip
    population_of: dict[str, str] = {}
    for dataset_id, name, contest_id, team_cap, team_delta_cap in datasets:
        population_of[dataset_id] = uuid.uuid4().hex
        rows = [b for b in budgets if b["dataset_id"] == dataset_id]

        def total(field: str, used: tuple[str, str], rows: list = rows) -> int:
            return sum(max(b[field], b[used[0]] + b[used[1]]) for b in rows)

        connection.execute(
            sa.text(
                "INSERT INTO populations (id, name, description, contest_id, cap_units, "
                "spent_units, reserved_units, delta_cap_units, delta_spent_units, "
                "delta_reserved_units, team_cap_units, team_delta_cap_units, created_at) VALUES "
                "(:id, :name, :description, :contest, :cap, :spent, :reserved, :dcap, :dspent, "
                ":dreserved, :team_cap, :team_dcap, :now)"
            ),
            {
                "id": population_of[dataset_id], "name": name, "contest": contest_id,
                "description": f"the people of {name} (carried over by migration 0005)",
                "cap": max(DEFAULT_CAP_UNITS,
                           total("cap_units", ("spent_units", "reserved_units"))),
                "dcap": max(DEFAULT_DELTA_CAP_UNITS, total(
                    "delta_cap_units", ("delta_spent_units", "delta_reserved_units"))),
                "spent": sum(b["spent_units"] for b in rows),
                "reserved": sum(b["reserved_units"] for b in rows),
                "dspent": sum(b["delta_spent_units"] for b in rows),
                "dreserved": sum(b["delta_reserved_units"] for b in rows),
                "team_cap": team_cap, "team_dcap": team_delta_cap, "now": datetime.now(UTC),
            },
        )  # fmt: skip
    op.drop_table("budgets")  # rebuilt below, keyed by population
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("population_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
    for dataset_id, population_id in population_of.items():
        connection.execute(
            sa.text("UPDATE datasets SET population_id = :p WHERE id = :d"),
            {"p": population_id, "d": dataset_id},
        )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.alter_column("population_id", existing_type=sa.String(length=32),
                              nullable=False)  # fmt: skip
        batch_op.create_foreign_key(
            "fk_datasets_population_id", "populations", ["population_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_datasets_population_id"), ["population_id"])
        batch_op.create_index(batch_op.f("ix_datasets_content_sha256"), ["content_sha256"])
        batch_op.drop_column("team_cap_units")
        batch_op.drop_column("team_delta_cap_units")
    _budgets_table("population_id", "populations")
    for b in budgets:
        _insert_budget(connection, "population_id", population_of[b["dataset_id"]], b)


def _insert_budget(connection: sa.Connection, key: str, value: str, row: sa.RowMapping) -> None:
    connection.execute(
        sa.text(f"INSERT INTO budgets (team_id, {key}, {', '.join(LEDGER)}) VALUES "
                f"(:team_id, :key, {', '.join(':' + name for name in LEDGER)})"),
        {**{name: row[name] for name in ("team_id", *LEDGER)}, "key": value},
    )  # fmt: skip


def downgrade() -> None:
    """Back to a ledger per team and dataset: each dataset of a population gets a copy of the
    team's population ledger (conservative: what was spent counts against every copy)."""
    connection = op.get_bind()
    budgets = connection.execute(sa.text(
        f"SELECT team_id, population_id, {', '.join(LEDGER)} FROM budgets"
    )).mappings().all()  # fmt: skip
    datasets = connection.execute(sa.text(
        "SELECT d.id, d.population_id, p.team_cap_units, p.team_delta_cap_units "
        "FROM datasets d JOIN populations p ON p.id = d.population_id"
    )).all()  # fmt: skip
    op.drop_table("budgets")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_cap_units", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("team_delta_cap_units", sa.BigInteger(), nullable=True))
    for dataset_id, _population, team_cap, team_delta_cap in datasets:
        connection.execute(
            sa.text("UPDATE datasets SET team_cap_units = :c, team_delta_cap_units = :d "
                    "WHERE id = :id"),
            {"c": team_cap, "d": team_delta_cap, "id": dataset_id},
        )  # fmt: skip
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.alter_column("team_cap_units", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("team_delta_cap_units", existing_type=sa.BigInteger(),
                              nullable=False)  # fmt: skip
        batch_op.drop_index(batch_op.f("ix_datasets_content_sha256"))
        batch_op.drop_index(batch_op.f("ix_datasets_population_id"))
        batch_op.drop_constraint("fk_datasets_population_id", type_="foreignkey")
        batch_op.drop_column("content_sha256")
        batch_op.drop_column("population_id")
    _budgets_table("dataset_id", "datasets")
    for b in budgets:
        for dataset_id, population_id, _cap, _dcap in datasets:
            if population_id == b["population_id"]:
                _insert_budget(connection, "dataset_id", dataset_id, b)
    op.drop_table("populations")
