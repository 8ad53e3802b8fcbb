"""Contests from the terminal (organizers): create one, set its rounds' dates, and set the
privacy budget caps: a team's on a population, or a population's contest-wide cap."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client import job_commands
from client.cli_common import (
    EXIT_USAGE,
    AsJson,
    Token,
    Url,
    connected,
    errors,
    non_negative,
    show_cap,
)

console = Console(highlight=False)
contests_app = typer.Typer(help="Contests and their rounds (organizers create them).")
budgets_app = typer.Typer(help="Privacy budgets: every team's, and setting caps (organizers).")

When = Annotated[
    str, typer.Option(help="YYYY-MM-DD, an ISO 8601 time (UTC unless it says), or now.")
]


def moment(text: str, flag: str) -> datetime:
    """A date or time as typed: ``now``, a date (its midnight, UTC) or an ISO 8601 time
    (UTC unless it carries an offset)."""
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError:
        errors.print(f"{flag} {text!r} is not a date; write 2027-03-01, 2027-03-01T09:00 or now")
        raise typer.Exit(EXIT_USAGE) from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@contests_app.callback(invoke_without_command=True)
def contests(
    ctx: typer.Context, url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Contests: rounds and whether each is open now, datasets, teams (same as `contests list`).

    Example: unseen contests
    """
    if ctx.invoked_subcommand is None:
        _list(url, token, as_json)


@contests_app.command("list")
def list_contests(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Contests: rounds and whether each is open now, datasets, teams.

    Example: unseen contests list
    """
    _list(url, token, as_json)


def _list(url: str | None, token: str | None, as_json: bool) -> None:
    with connected(url, token) as client:
        found = client.contests()
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    table = Table("contest", "rounds", "datasets", "teams", "approvals per release")
    for c in found:
        table.add_row(c["name"], "\n".join(_round(r) for r in c["rounds"]) or "none set",
                      ", ".join(c["datasets"]) or "-", ", ".join(c["teams"]) or "-",
                      str(c["approvals_needed"]))  # fmt: skip
    console.print(table)


def _round(r: dict[str, Any]) -> str:
    span = f"{str(r['opens_at'])[:16]} to {str(r['closes_at'])[:16]}".replace("T", " ")
    return f"{r['number']}: {span}{' (open now)' if r['open_now'] else ''}"


@contests_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The contest's name.")],
    description: Annotated[str, typer.Option(help="What it is about.")] = "",
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a contest; then set its rounds (`unseen contests rounds`).

    Example: unseen contests create soda-2027 --description "Seoul mobility"
    """
    with connected(url, token) as client:
        client.create_contest(name, description)
    console.print(f"contest {name} created; set its rounds with "
                  f"`unseen contests rounds {name} 1 --opens DATE --closes DATE`")  # fmt: skip


@contests_app.command("rounds")
def rounds(
    contest: Annotated[str, typer.Argument(help="The contest.")],
    number: Annotated[int, typer.Argument(help="1 (catalog and samples) or 2 (full data).")],
    opens: When,
    closes: When,
    url: Url = None,
    token: Token = None,
) -> None:
    """Set a round's dates: round 1 opens the catalog and samples, round 2 the full data.

    Example: unseen contests rounds soda-2027 2 --opens 2027-03-01 --closes 2027-04-30
    """
    if number not in (1, 2):
        errors.print(f"a contest has round 1 (samples) and round 2 (full data), not {number}")
        raise typer.Exit(EXIT_USAGE)
    start, end = moment(opens, "--opens"), moment(closes, "--closes")
    if end <= start:
        errors.print(f"--closes ({closes}) must come after --opens ({opens})")
        raise typer.Exit(EXIT_USAGE)
    with connected(url, token) as client:
        found = client.set_round(contest, number, start, end)
    shown = next(r for r in found["rounds"] if r["number"] == number)
    console.print(f"contest {contest}, round {_round(shown)}")


@budgets_app.callback(invoke_without_command=True)
def budgets(
    ctx: typer.Context, url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Every team's budget per population (organizers; a team sees its own), as `unseen budget`.

    Example: unseen budgets
    """
    if ctx.invoked_subcommand is None:
        job_commands.budget(url, token, as_json)


@budgets_app.command("set")
def set_cap(
    population: Annotated[
        str, typer.Option("--population", "-p", help="The population, or any dataset of it.")
    ],
    epsilon: Annotated[
        float, typer.Option("--epsilon", "-e", help="The ε cap.", callback=non_negative)
    ],
    team: Annotated[
        str | None,
        typer.Option(
            "--team",
            "-t",
            help="The team whose cap to set; leave out for the "
            "population's contest-wide cap over all teams.",
        ),
    ] = None,
    delta: Annotated[
        float | None,
        typer.Option(help="The δ cap (default: unchanged).", callback=non_negative),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Set a team's cap on a population, or (without --team) the population's contest-wide
    cap: what the data provider agreed to over all teams. Never below what was spent.

    Example: unseen budgets set --team team-alpha --population transport_cards -e 2
    """
    with connected(url, token) as client:
        if team is None:
            found = client.set_population_cap(population, epsilon, delta)
        else:
            found = client.set_budget_cap(team, population, epsilon, delta)
    show_cap(console, found)
