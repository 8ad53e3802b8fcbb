"""Who may touch which data when: the contest's rules as pure functions of its state.

SODA's model. Round one: every registered team browses the catalog, downloads samples and runs
code on them. Round two: full-data jobs, only for teams the organizer has admitted, whose
signed licence an organizer approved, and whose members' identities are all verified. Every
refusal lists everything still missing, so a team fixes it in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from api.models import as_utc


@dataclass(frozen=True)
class RoundDates:
    number: int
    opens_at: datetime
    closes_at: datetime

    def is_open(self, now: datetime) -> bool:
        return as_utc(self.opens_at) <= now < as_utc(self.closes_at)


@dataclass(frozen=True)
class TeamStanding:
    contest: str
    rounds: Sequence[RoundDates]
    admitted: bool
    licence: str | None  # status of the team's latest licence, None if none uploaded
    unverified_members: Sequence[str]


def _when(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%d %H:%M UTC")


def sample_problems(standing: TeamStanding, now: datetime) -> list[str]:
    """Why the team may not use samples now (empty: it may): no round of the contest is open."""
    if any(r.is_open(now) for r in standing.rounds):
        return []
    return [_closed(standing, now, "any round")]


def full_data_problems(standing: TeamStanding, now: datetime) -> list[str]:
    """Everything that keeps the team from full-data jobs now (empty: nothing does)."""
    problems = []
    second = [r for r in standing.rounds if r.number == 2]
    if not second or not second[0].is_open(now):
        problems.append(_closed(standing, now, "round two"))
    if not standing.admitted:
        problems.append("the team is not admitted to round two; the organizers admit finalists")
    if standing.licence is None:
        problems.append(
            "no signed licence uploaded; upload it with `unseen licences upload FILE --team TEAM`"
        )
    elif standing.licence == "pending":
        problems.append("the signed licence awaits an organizer's approval")
    elif standing.licence == "rejected":
        problems.append("the signed licence was rejected; upload a corrected one")
    if standing.unverified_members:
        names = ", ".join(sorted(standing.unverified_members))
        problems.append(f"identity not yet verified for: {names}")
    return problems


def _closed(standing: TeamStanding, now: datetime, which: str) -> str:
    rounds = [r for r in standing.rounds if which == "any round" or r.number == 2]
    upcoming = sorted((r for r in rounds if as_utc(r.opens_at) > now), key=lambda r: r.opens_at)
    if upcoming:
        return f"{which} of contest {standing.contest!r} opens {_when(upcoming[0].opens_at)}"
    if rounds:
        return f"{which} of contest {standing.contest!r} has closed"
    return f"contest {standing.contest!r} has no dates for {which} yet; ask the organizers"
