"""Budgets are per population, not per dataset: the same file under a second name shares its
budget (the cards / cards_twin attack), a population's contest-wide cap binds every team
together, caps never go below what is spent nor past what the population has left, and the
views show both ledgers. On the real embedded server over HTTP (SQLite); test_postgres.py runs
the same checks on PostgreSQL."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from client.api import UnseenClient, UnseenError
from tests.conftest import Deployment, SodaData
from tests.test_cli_journey import cli

pytestmark = pytest.mark.docker
COUNT = {"aggregates": [{"name": "n", "op": "count"}]}


def fresh_source(soda: SodaData, directory: Path, rows: int) -> tuple[str, str]:
    """A source file with bytes of its own (the first ``rows`` rows of the test cards), and
    the cards' public sample (same columns): new content, so a new population by default."""
    entry = soda.entries(soda.full)["transport_cards"]
    table = pq.read_table(soda.full / str(entry["file"])).slice(0, rows)
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"cards-{rows}.parquet"
    pq.write_table(table, source)
    sample = soda.entries(soda.sample)["transport_cards"]
    return str(source), str(soda.sample / str(sample["file"]))


def register(
    d: Deployment, soda: SodaData, name: str, source: tuple[str, str], **fields: object
) -> dict[str, object]:
    body = {**soda.registration("transport_cards", 2, as_name=name), "source_path": source[0],
            "sample_path": source[1]}  # fmt: skip
    for key in ("team_epsilon", "population_epsilon"):
        body.pop(key)
    return d.organizer.register_dataset(**body, **fields)


def refused(call: object, *args: object, **kwargs: object) -> UnseenError:
    with pytest.raises(UnseenError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def on(client: UnseenClient, population: str) -> dict[str, object]:
    return next(b for b in client.budget() if b["population"] == population)


def twin_attack(d: Deployment, soda: SodaData, tmp_path: Path) -> None:
    """A team spends its whole cap on one dataset; the same file registered again under
    another name is the same people: it joins the population, and the team is refused."""
    tag = secrets.token_hex(3)
    source = fresh_source(soda, tmp_path / "twin", rows=2000)
    first = register(d, soda, f"cards_{tag}", source, team_epsilon=1.0)
    assert first["population"] == f"cards_{tag}"  # a new population, named after it
    client = d.new_contestant(f"team-twin-{tag}", f"tw{tag}")
    job = client.query(f"cards_{tag}", COUNT, 1.0)
    twin = register(d, soda, f"cards_{tag}_twin", source)
    assert twin["population"] == f"cards_{tag}"  # same bytes: same people
    error = refused(client.query, f"cards_{tag}_twin", COUNT, 1.0)
    assert (error.status, error.code) == (409, "budget_exceeded")
    assert error.body["cap"] == "team" and f"cards_{tag}" in error.message
    budget = on(client, f"cards_{tag}")
    assert budget["datasets"] == [f"cards_{tag}", f"cards_{tag}_twin"]
    assert budget["spent"] + budget["reserved"] == pytest.approx(1.0)
    assert budget["available"] == 0
    # Naming another population for the same bytes is refused, naming the dataset it matches.
    conflict = refused(register, d, soda, f"cards_{tag}_x", source, population=f"other_{tag}")
    assert (conflict.status, conflict.code) == (409, "population_conflict")
    assert f"cards_{tag}" in conflict.message and conflict.body["dataset"] == f"cards_{tag}"
    # Joining with other caps than the population's is refused; naming it joins.
    differ = refused(register, d, soda, f"cards_{tag}_y", source, team_epsilon=5.0)
    assert differ.code == "population_caps_differ" and "team_epsilon" in differ.message
    named = register(d, soda, f"cards_{tag}_z", source, population=f"cards_{tag}")
    assert named["population"] == f"cards_{tag}"
    assert client.wait(job["id"], timeout=300)["state"] == "awaiting_review"
    assert on(client, f"cards_{tag}")["spent"] == pytest.approx(1.0)


def test_the_same_file_under_another_name_shares_the_budget(
    deployment: Deployment, soda: SodaData, tmp_path: Path
) -> None:
    twin_attack(deployment, soda, tmp_path)


def caps_hold(d: Deployment, soda: SodaData, tmp_path: Path) -> None:
    """Team caps: never below spent + reserved, raised never past what the population has
    left; the population's cap never below what all teams used; the contest-wide cap refuses a
    team that still has budget of its own."""
    tag = secrets.token_hex(3)
    people = f"capped_{tag}"
    source = fresh_source(soda, tmp_path / "caps", rows=1500)
    too_much = refused(register, d, soda, f"{people}_bad", source, population=people,
                       team_epsilon=5.0, population_epsilon=3.0)  # fmt: skip
    assert (too_much.status, too_much.code) == (422, "cap_above_population")
    register(d, soda, people, source, team_epsilon=2.0, population_epsilon=3.0)
    a = d.new_contestant(f"team-cap-a-{tag}", f"ca{tag}")
    b = d.new_contestant(f"team-cap-b-{tag}", f"cb{tag}")
    first = a.query(people, COUNT, 1.0)

    lower = refused(d.organizer.set_budget_cap, f"team-cap-a-{tag}", people, 0.5)
    assert (lower.status, lower.code) == (409, "cap_below_spent")
    assert "1" in lower.message and "at least" in lower.message
    pool_lower = refused(d.organizer.set_population_cap, people, 0.5)
    assert (pool_lower.status, pool_lower.code) == (409, "cap_below_spent")
    # 3 - 1 = 2 left contest-wide: team A (used 1) can be given at most 3.
    above = refused(d.organizer.set_budget_cap, f"team-cap-a-{tag}", people, 10.0)
    assert (above.status, above.code) == (409, "cap_above_population")
    assert "at most 3" in above.message
    assert d.organizer.set_budget_cap(f"team-cap-a-{tag}", people, 3.0)["cap"] == 3.0

    second = b.query(people, COUNT, 2.0)  # takes the last 2 of the population's 3
    pool = refused(a.query, people, COUNT, 1.0)  # A has 2 of its own left, the people none
    assert pool.code == "budget_exceeded" and pool.body["cap"] == "population"
    assert "contest-wide" in pool.message and people in pool.message
    seen = on(a, people)
    assert (seen["remaining"], seen["population_remaining"], seen["available"]) == (2.0, 0, 0)
    for client, job in ((a, first), (b, second)):
        assert client.wait(job["id"], timeout=300)["state"] == "awaiting_review"
    (row,) = [p for p in d.organizer.populations() if p["name"] == people]
    assert (row["cap"], row["spent"], row["reserved"], row["remaining"]) == (3.0, 3.0, 0, 0)
    assert row["datasets"] == [people] and row["team_caps_total"] >= 3.0 + 2.0  # every team
    assert d.organizer.set_population_cap(people, 3.0)["cap"] == 3.0  # = spent: allowed


def test_caps_never_go_below_spent_nor_past_the_population(
    deployment: Deployment, soda: SodaData, tmp_path: Path
) -> None:
    caps_hold(deployment, soda, tmp_path)


def test_the_catalog_and_the_terminal_show_populations(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    # The suite's two cards datasets are one file: one population, one budget.
    assert {ds["name"]: ds["population"] for ds in d.contestant.datasets()}["cards_tiny"] == (
        "transport_cards"
    )
    contestant = {"UNSEEN_URL": d.server.url, "UNSEEN_TOKEN": str(d.contestant.token)}
    shown = cli("budget", home=tmp_path, extra=contestant)
    assert shown.returncode == 0, shown.stderr
    assert "transport_cards" in shown.stdout and "population left" in shown.stdout
    rows = json.loads(cli("budget", "--json", home=tmp_path, extra=contestant).stdout)
    (cards,) = [r for r in rows if r["population"] == "transport_cards"]
    assert {"cards_tiny", "transport_cards"} <= set(cards["datasets"])
    assert cards["population_cap"] == 100_000.0
    organizer = {"UNSEEN_URL": d.server.url, "UNSEEN_TOKEN": str(d.organizer.token)}
    listed = cli("populations", home=tmp_path, extra=organizer)
    assert listed.returncode == 0 and "transport_cards" in listed.stdout
    assert cli("populations", home=tmp_path, extra=contestant).returncode == 1  # organizers'
    kept = cli("populations", "set", "transport_cards", "--epsilon", "100000", home=tmp_path,
               extra=organizer)  # fmt: skip
    assert kept.returncode == 0 and "over all teams" in kept.stdout, kept.stderr
    team = cli("populations", "team", "cards_tiny", "team-alpha", "--epsilon", "10",
               home=tmp_path, extra=organizer)  # fmt: skip
    assert team.returncode == 0 and "team-alpha on transport_cards" in team.stdout
