"""The API on a real PostgreSQL (loopback, set up by scripts/system-setup): jobs of both modes
run and release, and one budget holds under concurrent submissions — the same tests' promises
as on SQLite, on the database a growing contest uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Deployment, SodaData, postgres_database, start_deployment
from tests.test_e2e_jobs import budget_on
from tests.test_e2e_queries import PLAN, rush_one_budget
from tests.test_failures import rush_one_population
from tests.test_populations import caps_hold, twin_attack

pytestmark = [pytest.mark.docker, pytest.mark.postgres]
QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def on_postgres(
    runner_image: str, soda: SodaData, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    env = {"UNSEEN_DATABASE_URL": database, "UNSEEN_BLOCK_SECONDS": "8", "UNSEEN_SLOTS": "2"}
    deployed = start_deployment(tmp_path_factory.mktemp("pg-server"), soda, env)
    yield deployed
    deployed.server.stop()


def test_both_modes_run_and_release_on_postgres(on_postgres: Deployment, database: str) -> None:
    d = on_postgres
    client = d.new_contestant("team-pg", "paula")
    job = client.submit("cards_tiny", QUICK, [{"name": "n", "lo": 0, "hi": 1e5}], 0.5)
    query = client.query("cards_tiny", PLAN, 0.5)
    for pending in (job, query):
        assert client.wait(pending["id"], timeout=300)["state"] == "awaiting_review"
        d.organizer.release(pending["id"])
        assert client.job(pending["id"])["result"]
    assert budget_on(client, "cards_tiny")["spent"] == pytest.approx(1.0)
    url = database.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as connection:  # the state really lives in PostgreSQL
        states = connection.execute(
            "select state from jobs where id in (%s, %s)", (job["id"], query["id"])
        ).fetchall()
    assert sorted(states) == [("released",), ("released",)]


def test_concurrent_submissions_never_overspend_on_postgres(on_postgres: Deployment) -> None:
    """20 submissions of ε=1 (both modes) at once against a cap of 5: exactly 5 get in."""
    rush_one_budget(on_postgres, "team-pg-rush", "pete")


def test_200_submissions_never_overspend_a_population_on_postgres(
    on_postgres: Deployment, soda: SodaData, tmp_path: Path
) -> None:
    """Two teams, two datasets of one population, its contest-wide cap of 5: exactly 5 in."""
    rush_one_population(on_postgres, soda, tmp_path)


def test_the_same_file_twice_shares_one_budget_on_postgres(
    on_postgres: Deployment, soda: SodaData, tmp_path: Path
) -> None:
    twin_attack(on_postgres, soda, tmp_path)


def test_caps_never_go_below_spent_nor_past_the_population_on_postgres(
    on_postgres: Deployment, soda: SodaData, tmp_path: Path
) -> None:
    caps_hold(on_postgres, soda, tmp_path)
