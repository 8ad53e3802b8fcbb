"""`unseen audit`: the organizers' view of the audit log, and `unseen audit verify`, which has
the server recompute its hash chain and says where it breaks."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from client.cli_common import EXIT_FAILED, AsJson, Token, Url, connected, errors

audit_app = typer.Typer(
    help="The audit log (organizers): who did what, hash-chained.", no_args_is_help=False
)


@audit_app.callback(invoke_without_command=True)
def show(
    ctx: typer.Context,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    job: Annotated[str | None, typer.Option(help="Only events about this job.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only events by this user.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """List audit entries, newest first.

    Example: unseen audit --action budget.charged --limit 20
    """
    if ctx.invoked_subcommand is not None:
        return
    with connected(url, token) as client:
        events = client.audit(action=action, job=job, actor=actor, limit=limit)
    if as_json:
        Console().print_json(json.dumps(events))
        return
    table = Table("seq", "at", "actor", "action", "detail")
    for event in events:
        detail = json.dumps(event["detail"], ensure_ascii=False, sort_keys=True)
        table.add_row(str(event["seq"]), event["at"][:19], event["actor"] or "-",
                      event["action"], detail)  # fmt: skip
    Console(highlight=False).print(table)


@audit_app.command("verify")
def verify(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Recompute the audit log's hash chain; exit 1 and name the entry if it is broken.

    Example: unseen audit verify
    """
    with connected(url, token) as client:
        report = client.verify_audit()
    if as_json:
        Console().print_json(json.dumps(report))
    elif report["ok"]:
        Console(highlight=False).print(
            f"audit log intact: {report['entries']} entries, head {report['head_hash']}"
        )
    if not report["ok"]:
        errors.print(
            f"audit log broken at entry {report['first_bad_seq']}: {report['problem']}; "
            "restore the database from a backup and compare"
        )
        raise typer.Exit(EXIT_FAILED)
