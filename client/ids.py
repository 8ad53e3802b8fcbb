"""IDs a person types: any unique prefix of a job or licence id, and tables that show the
shortest prefix that is unique (at least 8 characters) whole, never cut.

A contestant's prefix is matched among their own team's jobs and licences only (the server
lists nothing else to them), so a prefix tells nothing about other teams' ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import typer

from client.api import UnseenClient
from client.cli_common import EXIT_FAILED, EXIT_USAGE, errors

FULL_ID = re.compile(r"^[0-9a-f]{32}$")
HEX = re.compile(r"^[0-9a-f]{1,32}$")
SHORTEST = 8


def short_ids(ids: Iterable[str], at_least: int = SHORTEST) -> dict[str, str]:
    """Each id's shortest prefix (``at_least`` long or more) that no other id here shares."""
    every = sorted(set(ids))
    shown: dict[str, str] = {}
    for i, this in enumerate(every):
        length = at_least
        for other in every[max(0, i - 1) : i] + every[i + 1 : i + 2]:  # neighbours in order
            length = max(length, _common(this, other) + 1)
        shown[this] = this[:length]
    return shown


def _common(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _pick(what: str, ref: str, ids: list[str], listing: str) -> str:
    if len(ids) == 1:
        return ids[0]
    if not ids:
        errors.print(f"no {what} of yours starts with {ref!r}; list them with `{listing}`")
        raise typer.Exit(EXIT_FAILED)
    shown = ", ".join(sorted(short_ids(ids).values())[:5])
    errors.print(f"{ref!r} matches {len(ids)} {what}s ({shown}); type more of the id")
    raise typer.Exit(EXIT_USAGE)


def _checked(what: str, ref: str) -> str:
    ref = ref.strip().lower()
    if not HEX.match(ref):
        errors.print(f"{ref!r} is not a {what} id: type its id, or the start of it, as "
                     f"`unseen jobs` or `unseen licences list TEAM` show it")  # fmt: skip
        raise typer.Exit(EXIT_USAGE)
    return ref


def job_id(client: UnseenClient, ref: str) -> str:
    """The one job of yours (organizers: any job) whose id starts with ``ref``."""
    ref = _checked("job", ref)
    if FULL_ID.match(ref):
        return ref
    return _pick("job", ref, [j["id"] for j in client.jobs(prefix=ref)], "unseen jobs")


def licence_id(client: UnseenClient, ref: str) -> str:
    """The one licence whose id starts with ``ref``: among your team's, or (organizers) all
    teams' uploads."""
    ref = _checked("licence", ref)
    if FULL_ID.match(ref):
        return ref
    me = client.me()
    teams = (
        [str(t["id"]) for t in client.teams_status()]
        if me["role"] == "organizer"
        else [str(me["team_id"])]
    )
    found = [lic["id"] for team in teams for lic in client.licences(team)
             if lic["id"].startswith(ref)]  # fmt: skip
    return _pick("licence", ref, found, "unseen licences list TEAM")
