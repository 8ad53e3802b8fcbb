"""Organizer commands (and the team's licence upload): teams and their way to round two,
licences, the review queue, dataset registration, and populations with their caps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client import ids, job_commands
from client.cli_common import (
    EXIT_USAGE,
    AsJson,
    Quiet,
    Token,
    Url,
    connected,
    errors,
    non_negative,
    print_ids,
    read_json_file,
    show_cap,
    verbatim,
)

console = Console(highlight=False)
teams_app = typer.Typer(help="Teams and their way to round two (organizers).")
licences_app = typer.Typer(help="Signed licence agreements.", no_args_is_help=True)
review_app = typer.Typer(help="The review queue: nothing leaves before release (organizers).")
datasets_app = typer.Typer(help="The catalog; organizers register datasets.")
populations_app = typer.Typer(
    help="Populations (the people behind datasets) and their budget caps (organizers)."
)


@teams_app.callback(invoke_without_command=True)
def teams(
    ctx: typer.Context, url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Every team: contest, admission, licence, identities, and what still blocks round two.

    Example: unseen teams
    """
    if ctx.invoked_subcommand is not None:
        return
    with connected(url, token) as client:
        found = client.teams_status()
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    table = Table("team", "contest", "admitted", "licence", "members", "round two blocked by")
    for t in found:
        members = ", ".join(f"{m['name']}{'' if m['identity_verified'] else ' (unverified)'}"
                            for m in t["members"])  # fmt: skip
        licence = t["licence"]["status"] if t["licence"] else "-"
        table.add_row(t["name"], t["contest"] or "-", "yes" if t["admitted"] else "no", licence,
                      members, "; ".join(t["full_data_blocked_by"]) or "nothing")  # fmt: skip
    console.print(table)


@teams_app.command("admit")
def admit(
    team: Annotated[str, typer.Argument(help="Team to admit to round two.")],
    withdraw: Annotated[bool, typer.Option(help="Withdraw the admission instead.")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Admit a finalist team to round two (full data).

    Example: unseen teams admit team-alpha
    """
    with connected(url, token) as client:
        client.admit(team, admitted=not withdraw)
    console.print(f"{team}: {'admission withdrawn' if withdraw else 'admitted to round two'}")


@teams_app.command("verify")
def verify_identity(
    user: Annotated[str, typer.Argument(help="Member whose identity you checked.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Record that you verified a member's identity.

    Example: unseen teams verify alice
    """
    with connected(url, token) as client:
        client.verify_identity(user)
    console.print(f"identity of {user} verified")


@licences_app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(help="The signed licence: PDF, PNG or JPEG, <= 10 MB.")],
    team: Annotated[str, typer.Option("--team", "-t", help="Your team.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Upload your team's signed licence for the organizers to approve.

    Example: unseen licences upload signed.pdf --team team-alpha
    """
    try:
        content = file.read_bytes()
    except OSError as exc:
        errors.print(f"cannot read {file}: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from exc
    with connected(url, token) as client:
        licence = client.upload_licence(team, content, file.name)
    console.print(f"uploaded {file.name} as licence {licence['id']}: awaiting approval")


@licences_app.command("list")
def list_licences(
    team: Annotated[str, typer.Argument(help="Team whose uploads to list.")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """A team's licence uploads, newest first.

    Example: unseen licences list team-alpha
    """
    with connected(url, token) as client:
        found = client.licences(team)
    if quiet:
        print_ids(found)
        return
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    shown = ids.short_ids(lic["id"] for lic in found)
    table = Table()  # the id whole: it is what the organizer types next
    table.add_column("licence", no_wrap=True, min_width=max(map(len, shown.values()), default=8))
    for heading in ("file", "uploaded by", "status", "reason"):
        table.add_column(heading, overflow="fold")
    for lic in found:
        table.add_row(shown[lic["id"]], lic["filename"], lic["uploaded_by"], lic["status"],
                      lic["reason"])  # fmt: skip
    console.print(table)


@licences_app.command("approve")
def approve(
    licence: Annotated[str, typer.Argument(help="Licence id, or any unique start of it.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Approve a signed licence.

    Example: unseen licences approve 9c1e04ab
    """
    with connected(url, token) as client:
        licence = ids.licence_id(client, licence)
        client.approve_licence(licence)
    console.print(f"licence {licence} approved")


@licences_app.command("reject")
def reject_licence(
    licence: Annotated[str, typer.Argument(help="Licence id, or any unique start of it.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="What the team must fix.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Reject a signed licence, saying what to fix.

    Example: unseen licences reject 9c1e04ab --reason "page 2 is not signed"
    """
    with connected(url, token) as client:
        licence = ids.licence_id(client, licence)
        client.reject_licence(licence, reason)
    console.print(f"licence {licence} rejected")


@review_app.callback(invoke_without_command=True)
def review_list(
    ctx: typer.Context,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Jobs awaiting review (same as `unseen review list`).

    Example: unseen review
    """
    if ctx.invoked_subcommand is None:
        _queue(url, token, as_json, quiet)


@review_app.command("list")
def review_list_command(
    url: Url = None, token: Token = None, as_json: AsJson = False, quiet: Quiet = False
) -> None:
    """Jobs awaiting review.

    Example: unseen review list -q
    """
    _queue(url, token, as_json, quiet)


def _queue(url: str | None, token: str | None, as_json: bool, quiet: bool = False) -> None:
    with connected(url, token) as client:
        found = client.review_queue()
    if quiet:
        print_ids(found)
        return
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    shown = ids.short_ids(job["id"] for job in found)
    table = Table()  # the id whole: it is what the organizer types next
    table.add_column("job", no_wrap=True, min_width=max(map(len, shown.values()), default=8))
    for heading in ("team", "dataset", "mode", "ε", "blocks defaulted"):
        table.add_column(heading, overflow="fold")
    for job in found:
        report = job.get("report") or {}
        table.add_row(shown[job["id"]], job["team"], job["dataset"], job["mode"],
                      f"{job['epsilon']:g}", str(report.get("blocks_defaulted", "-")))  # fmt: skip
    console.print(table)


@review_app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(help="Job to inspect, or its id's start.")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A job as organizers see it: code or plan, pending (noised) values, report, logs.

    Example: unseen review show 3f2a...
    """
    with connected(url, token) as client:
        job = client.job(ids.job_id(client, job_id))
    if as_json:
        console.print_json(json.dumps(job, default=str))
        return
    console.print(f"job {job['id']} of {job['team']} on {job['dataset']}: {job['state']}, "
                  f"{job['mode']}, ε={job['epsilon']:g}")  # fmt: skip
    shown = json.dumps(job["plan"], indent=2) if job.get("plan") else job.get("code", "")
    console.out(verbatim(str(shown)), highlight=False)  # the team's words, never markup
    _values(job.get("pending_values") or [])
    if job.get("report"):
        console.out("report (from the full data, organizers only): "
                    + verbatim(json.dumps(job["report"])), highlight=False)  # fmt: skip
    if job.get("logs"):
        console.out("logs (from the full data, organizers only):\n"
                    + verbatim(str(job["logs"])[-4000:]), highlight=False)  # fmt: skip
    if job.get("review"):
        console.out(_review_line(job), highlight=False)
    if job.get("state") in ("awaiting_review", "partially_reviewed"):
        console.out(REVIEW_RULE, highlight=False)


REVIEW_RULE = (
    "Decide on the code and the noised values only. The logs, the report and the block "
    "outcomes come from the full data, and the team sees a rejection and its reason: a "
    "decision taken on them passes what they say to the team, outside any noise."
)


def _values(cells: list[dict[str, Any]]) -> None:
    if not cells:
        return
    keys = list(cells[0].get("keys") or {})
    table = Table(*keys, "output", "value (noised)", "noise scale", "95% error")
    for c in cells:
        table.add_row(*(str(c["keys"][k]) for k in keys), c["name"], f"{c['value']:g}",
                      f"{c['noise_scale']:.4g}", f"±{c['error_bound_95']:.4g}")  # fmt: skip
    console.print(table)


@review_app.command("release")
def release(
    job_id: Annotated[str, typer.Argument(help="Job to release, or its id's start.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Approve a job's release; it is released to its team once the contest's approvals (1 or
    2, from different organizers, none of the job's team) are in.

    Example: unseen review release 3f2a...
    """
    with connected(url, token) as client:
        job_id = ids.job_id(client, job_id)
        job = client.release(job_id)
    if job["state"] == "released":
        console.print(f"job {job_id} released: the team sees the values now")
        return
    console.print(f"job {job_id}: {_review_line(job)}")


def _review_line(job: dict[str, Any]) -> str:
    review = job.get("review") or {}
    approvals = review.get("approvals", [])
    by = ", ".join(f"{a['by']} at {str(a['at'])[:16]}" for a in approvals) or "nobody yet"
    line = f"approved by {len(approvals)} of {review.get('needed', 1)} needed ({by})"
    left = review.get("needed", 1) - len(approvals)
    if job["state"] in ("awaiting_review", "partially_reviewed") and left > 0:
        line += f"; still needed: {left} from another organizer"
    return line


@review_app.command("rule")
def review_rule(
    contest: Annotated[str, typer.Argument(help="The contest.")],
    approvals: Annotated[
        int | None,
        typer.Option(
            help="Approvals each release needs (1 or 2); omit for the default: "
            "2 once there are two organizers."
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Set how many independent organizers approve each release of a contest.

    Example: unseen review rule soda-2027 --approvals 2
    """
    with connected(url, token) as client:
        found = client.set_review_rule(contest, approvals)
    console.print(f"contest {contest}: each release needs {found['approvals_needed']} approval(s)")


@review_app.command("reject")
def reject(
    job_id: Annotated[str, typer.Argument(help="Job to reject, or its id's start.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="What the team will read.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Reject a job's output; the team sees the reason and the budget stays spent.

    Example: unseen review reject 3f2a... --reason "outputs too fine-grained"
    """
    with connected(url, token) as client:
        job_id = ids.job_id(client, job_id)
        client.reject(job_id, reason)
    console.print(f"job {job_id} rejected (its ε stays spent: the noise was drawn)")


@datasets_app.callback(invoke_without_command=True)
def datasets(
    ctx: typer.Context, url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """The catalog of your contest: units, columns, public bounds and key sets.

    Example: unseen datasets
    """
    if ctx.invoked_subcommand is None:
        job_commands.datasets(url, token, as_json)


@datasets_app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Name contestants will use.")],
    source: Annotated[Path, typer.Option(help="Full data: a Parquet file on the server's node.")],
    sample: Annotated[
        Path | None,
        typer.Option(help="A public sample file you made (never real rows); or --synthesize."),
    ] = None,
    synthesize: Annotated[
        float | None,
        typer.Option(
            help="ε of a DP synthetic sample made from the full data (the safe default; time "
            "ranges from --manifest); charged to the population"
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="A `unseen data generate` manifest: unit, bounds, key sets from it."),
    ] = None,
    unit: Annotated[str | None, typer.Option(help="Privacy unit column.")] = None,
    bound: Annotated[
        list[str] | None, typer.Option(help="column:lo:hi public bounds (repeatable).")
    ] = None,
    blocks: Annotated[int | None, typer.Option(help="Blocks k (default: the server's).")] = None,
    population: Annotated[
        str | None,
        typer.Option(
            help="The people it holds (default: a new population named after it; a source "
            "already registered joins its dataset's). Budgets are per team and population."
        ),
    ] = None,
    team_epsilon: Annotated[
        float | None,
        typer.Option(
            help="ε cap per team on a new population (default 10).", callback=non_negative
        ),
    ] = None,
    population_epsilon: Annotated[
        float | None,
        typer.Option(
            help="Contest-wide ε cap of a new population, all teams (default 100).",
            callback=non_negative,
        ),
    ] = None,
    contest: Annotated[str | None, typer.Option(help="Contest it belongs to.")] = None,
    node: Annotated[
        str | None,
        typer.Option(
            help="Data node holding the files (default: the server's own); its worker "
            "partitions them there, and --source/--sample are paths on that node."
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Register a dataset: the server (or the data node named) partitions the full data into
    blocks and publishes the sample: a DP synthetic one with --synthesize E, or your file.

    Example: unseen datasets register transport_cards --source /data/cards.parquet
             --synthesize 1 --manifest /data/manifest.json
    """
    where = (lambda path: str(path)) if node else (lambda path: str(path.resolve()))
    if (sample is None) == (synthesize is None):
        errors.print("give --synthesize EPSILON (a DP synthetic sample of the full data) or "
                     "--sample FILE (one you made, never real rows)")  # fmt: skip
        raise typer.Exit(EXIT_USAGE)
    body: dict[str, Any] = {"name": name, "source_path": where(source), "bounds": {},
                            "key_sets": {}}  # fmt: skip
    if sample is not None:
        body["sample_path"] = where(sample)
    else:
        from client.synthesis_commands import synthesis_body

        assert synthesize is not None
        body["synthesize"] = synthesis_body(name, synthesize, None, None, None, None, None,
                                            None, manifest)  # fmt: skip
    if manifest is not None:
        entries = read_json_file(manifest, "manifest").get("datasets", [])
        entry = next((e for e in entries if e.get("name") == name), None)
        if entry is None:
            errors.print(f"{manifest} describes no dataset named {name!r}")
            raise typer.Exit(EXIT_USAGE)
        body.update(unit_column=entry["unit_column"], bounds=entry.get("bounds", {}),
                    key_sets=entry.get("key_sets", {}),
                    description=entry.get("description", ""))  # fmt: skip
        if entry.get("population"):
            body["population"] = entry["population"]
    if unit:
        body["unit_column"] = unit
    for item in bound or []:
        column, _, rest = item.partition(":")
        lo, _, hi = rest.partition(":")
        try:
            body["bounds"][column] = [float(lo), float(hi)]
        except ValueError as exc:
            raise typer.BadParameter(f"{item!r}: write column:lo:hi") from exc
    if "unit_column" not in body:
        errors.print("give --unit COLUMN (the privacy unit) or --manifest FILE")
        raise typer.Exit(EXIT_USAGE)
    if blocks is not None:
        body["blocks"] = blocks
    given = {
        "population": population,
        "team_epsilon": team_epsilon,
        "population_epsilon": population_epsilon,
        "contest": contest,
        "node": node,
    }
    body.update({key: value for key, value in given.items() if value is not None})
    with connected(url, token, timeout=600.0) as client:
        registered = client.register_dataset(**body)
    console.print(f"registered {name}: {registered['blocks']} blocks, "
                  f"{registered['rows']:,} rows, {registered['units']:,} units, "
                  f"population {registered['population']}")  # fmt: skip
    if registered.get("synthetic"):
        from client.synthesis_commands import show_report

        with connected(url, token) as client:
            latest = client.syntheses(name)[0]
        console.print(f"its public sample is synthetic: {registered['sample_rows']:,} rows at "
                      f"ε={registered['sample_epsilon']:g}")  # fmt: skip
        show_report(latest["report"])


@populations_app.callback(invoke_without_command=True)
def populations(
    ctx: typer.Context, url: Url = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Every population: its datasets, its contest-wide ε ledger over all teams, team caps.

    Example: unseen populations
    """
    if ctx.invoked_subcommand is not None:
        return
    with connected(url, token) as client:
        found = client.populations()
    if as_json:
        console.print_json(json.dumps(found))
        return
    table = Table("population", "contest", "datasets", "ε cap (all teams)", "spent", "reserved",
                  "remaining", "team caps total", "δ remaining")  # fmt: skip
    for p in found:
        table.add_row(p["name"], p["contest"] or "-", ", ".join(p["datasets"]), f"{p['cap']:g}",
                      f"{p['spent']:g}", f"{p['reserved']:g}", f"{p['remaining']:g}",
                      f"{p['team_caps_total']:g}", f"{p['delta_remaining']:g}")  # fmt: skip
    console.print(table)


@populations_app.command("set")
def set_population(
    population: Annotated[str, typer.Argument(help="Population to change.")],
    epsilon: Annotated[
        float,
        typer.Option("--epsilon", "-e", help="Contest-wide ε cap.", callback=non_negative),
    ],
    delta: Annotated[
        float | None, typer.Option(help="Contest-wide δ cap.", callback=non_negative)
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Set a population's contest-wide cap: the total over all teams the data provider agreed
    to. Refused below what the teams already spent and hold.

    Example: unseen populations set card_holders --epsilon 60
    """
    with connected(url, token) as client:
        found = client.set_population_cap(population, epsilon, delta)
    show_cap(console, found)


@populations_app.command("team")
def set_team(
    population: Annotated[str, typer.Argument(help="Population (or a dataset of it).")],
    team: Annotated[str, typer.Argument(help="Team whose cap to set.")],
    epsilon: Annotated[
        float, typer.Option("--epsilon", "-e", help="The team's ε cap.", callback=non_negative)
    ],
    delta: Annotated[
        float | None, typer.Option(help="The team's δ cap.", callback=non_negative)
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Set a team's cap on a population. Refused below what the team spent and holds, and
    (raised) past what the population has left contest-wide.

    Example: unseen populations team card_holders team-alpha --epsilon 5
    """
    with connected(url, token) as client:
        found = client.set_budget_cap(team, population, epsilon, delta)
    show_cap(console, found)
