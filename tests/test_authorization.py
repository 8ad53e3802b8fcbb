"""The whole authorization matrix: every route of the API, for every role — anonymous, a
contestant of the team that owns the resource, a contestant of another team, an organizer, a
data node's worker credential —
with the answer each must get. A route missing from the matrix fails the test, so a new route
cannot ship without its row. Runs against the real app over real HTTP with an in-memory sandbox
(tests/fakes.py): who may do what does not depend on Docker. `make unit` runs it on SQLite,
`make test` on PostgreSQL too."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.api import UnseenClient
from tests.conftest import (
    LICENCE_PDF,
    SodaData,
    postgres_database,
    start_fake_deployment,
)

ROLES = ("anonymous", "other", "own", "organizer", "node")  # the order requests are made in
PASSWORD = "matrix-row and column"
QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]
PLAN = {"group_by": ["line"], "aggregates": [{"name": "n", "op": "count"}],
        "max_rows_per_unit": 1, "max_groups_per_unit": 1}  # fmt: skip


@dataclass
class World:
    """Team A ('own') and team B ('other'), each with one admitted member, and things A owns."""

    url: str
    soda: SodaData
    tokens: dict[str, str | None]
    organizer: UnseenClient
    own: UnseenClient
    own_user: str
    made: dict[str, int] = field(default_factory=dict)
    #: One connection pool for every request (a new client per request costs more than it).
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))

    def unique(self, prefix: str) -> str:
        self.made[prefix] = self.made.get(prefix, 0) + 1
        return f"{prefix}-{self.made[prefix]}-{secrets.token_hex(2)}"

    def job_awaiting_review(self, query: bool = False) -> str:
        if query:
            job = self.own.query("cards_tiny", PLAN, 0.1)
        else:
            job = self.own.submit("cards_tiny", QUICK, OUTPUTS, 0.1)
        assert self.own.wait(job["id"], timeout=300, interval=0.05)["state"] == "awaiting_review"
        return str(job["id"])

    def licence(self, team: str = "team-own") -> str:
        """A pending licence: the own team's, or one of a scratch team to decide on."""
        uploader = self.own if team == "team-own" else self.organizer
        return str(uploader.upload_licence(team, LICENCE_PDF, "licence.pdf")["id"])

    def scratch_member(self) -> str:
        """A contestant of the scratch team: a password reset revokes all their tokens."""
        name = self.unique("user")
        self.organizer.add_member("team-scratch", name)
        return name

    def spare_token(self) -> str:
        UnseenClient(self.url).login(self.own_user, PASSWORD, "spare")
        return str(self.own.tokens()[-1]["id"])


Request = dict[str, Any]
Make = Callable[[World, str], Request]


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    expect: tuple[int, int, int, int, int]  # anonymous, other, own, organizer, data node
    make: Make = lambda _w, _r: {}
    slow: bool = False  # the organizer's request does seconds of real work: `make test` only


def _later(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def _registration(w: World, _role: str) -> Request:
    body = w.soda.registration("transport_cards", 2, as_name=w.unique("ds").replace("-", "_"))
    return {"json": {**body, "contest": "soda-test"}}


MATRIX = [
    Row("POST", "/v1/organizers", (401, 403, 403, 403, 403),
        lambda w, _: {"json": {"name": "eve"}}),
    Row("GET", "/v1/me", (401, 200, 200, 200, 200)),
    Row("GET", "/v1/teams", (401, 403, 403, 200, 403)),
    Row("POST", "/v1/teams", (401, 403, 403, 201, 403),
        lambda w, _: {"json": {"name": w.unique("team"), "contest": "soda-test"}}),
    Row("POST", "/v1/teams/{team}/members", (401, 403, 403, 201, 403),
        lambda w, _: {"path": {"team": "team-scratch"}, "json": {"name": w.unique("user")}}),
    # A name per request: five failures for one name would throttle it (test_login_throttle).
    Row("POST", "/v1/login", (401, 401, 401, 401, 401),
        lambda w, _: {"json": {"name": w.unique("guess"), "password": "wrong password!"}}),
    Row("PUT", "/v1/me/password", (401, 204, 204, 204, 403),
        lambda w, _: {"json": {"password": PASSWORD, "current_password": PASSWORD}}),
    Row("PUT", "/v1/users/{name}/password", (401, 403, 403, 200, 403),
        lambda w, _: {"path": {"name": w.scratch_member()}}),
    Row("GET", "/v1/tokens", (401, 403, 200, 200, 403),
        lambda w, _: {"params": {"of": w.own_user}}),
    Row("DELETE", "/v1/tokens/{token_id}", (401, 404, 204, 204, 403),
        lambda w, _: {"path": {"token_id": w.spare_token()}}),
    # Everyone's own other tokens: the requests' own tokens stay (the world keeps using them).
    Row("DELETE", "/v1/tokens", (401, 200, 200, 200, 403)),
    Row("GET", "/v1/token-policy", (401, 200, 200, 200, 403)),
    # The server's own defaults again: nothing the rest of the suite relies on moves.
    Row("PUT", "/v1/token-policy", (401, 403, 403, 200, 403),
        lambda w, _: {"json": {"default_seconds": 30 * 86400, "max_seconds": 90 * 86400}}),
    Row("GET", "/v1/contests", (401, 200, 200, 200, 403)),
    Row("POST", "/v1/contests", (401, 403, 403, 201, 403),
        lambda w, _: {"json": {"name": w.unique("contest")}}),
    Row("PUT", "/v1/contests/{contest}/rounds/{number}", (401, 403, 403, 200, 403),
        lambda w, _: {"path": {"number": "2"},
                      "json": {"opens_at": _later(-1), "closes_at": _later(30)}}),
    Row("PUT", "/v1/contests/{contest}/review", (401, 403, 403, 200, 403),
        lambda w, _: {"json": {"approvals": None}}),
    Row("PUT", "/v1/teams/{team}/admission", (401, 403, 403, 200, 403),
        lambda w, _: {"json": {"admitted": True}}),
    Row("PUT", "/v1/users/{name}/identity", (401, 403, 403, 200, 403),
        lambda w, _: {"json": {"verified": True}}),
    Row("GET", "/v1/teams/status", (401, 403, 403, 200, 403)),
    Row("GET", "/v1/results", (401, 200, 200, 200, 403)),
    Row("GET", "/v1/teams/{team}/licences", (401, 404, 200, 200, 403)),
    Row("POST", "/v1/teams/{team}/licences", (401, 404, 201, 201, 403),
        lambda w, _: {"files": {"file": ("licence.pdf", LICENCE_PDF, "application/pdf")}}),
    Row("GET", "/v1/licences/{licence_id}/file", (401, 404, 200, 200, 403)),
    Row("POST", "/v1/licences/{licence_id}/approve", (401, 403, 403, 200, 403),
        lambda w, _: {"path": {"licence_id": w.licence("team-scratch")}}),
    Row("POST", "/v1/licences/{licence_id}/reject", (401, 403, 403, 200, 403),
        lambda w, _: {"path": {"licence_id": w.licence("team-scratch")},
                      "json": {"reason": "unsigned"}}),
    Row("GET", "/v1/datasets", (401, 200, 200, 200, 403)),
    Row("POST", "/v1/datasets", (401, 403, 403, 201, 403), _registration),
    Row("GET", "/v1/datasets/{name}", (401, 200, 200, 200, 403),
        lambda w, _: {"path": {"name": "cards_tiny"}}),
    Row("GET", "/v1/datasets/{name}/sample", (401, 200, 200, 200, 403),
        lambda w, _: {"path": {"name": "cards_tiny"}}),
    Row("POST", "/v1/datasets/{name}/synthesize", (401, 403, 403, 201, 403),
        lambda w, _: {"path": {"name": "cards_tiny"},
                      "json": {"epsilon": 0.01, "rows": 500,
                               "time_bounds": {"ts": ["2026-03-02", "2026-03-09"]}}},
        slow=True),  # a real DP synthesis
    Row("GET", "/v1/datasets/{name}/syntheses", (401, 403, 403, 200, 403),
        lambda w, _: {"path": {"name": "cards_tiny"}}),
    Row("POST", "/v1/estimate", (401, 200, 200, 200, 403),
        lambda w, _: {"json": {"dataset": "cards_tiny", "plan": PLAN, "epsilon": 1.0}}),
    Row("POST", "/v1/jobs", (401, 202, 202, 403, 403),
        lambda w, _: {"json": {"dataset": "cards_tiny", "code": QUICK, "outputs": OUTPUTS,
                               "epsilon": 0.1}}),
    Row("GET", "/v1/jobs", (401, 200, 200, 200, 403)),
    Row("GET", "/v1/jobs/{job_id}", (401, 404, 200, 200, 403)),
    Row("POST", "/v1/queries", (401, 202, 202, 403, 403),
        lambda w, _: {"json": {"dataset": "cards_tiny", "plan": PLAN, "epsilon": 0.1}}),
    Row("GET", "/v1/review", (401, 403, 403, 200, 403)),
    Row("POST", "/v1/jobs/{job_id}/release", (401, 403, 403, 200, 403),
        lambda w, role: {"path": {"job_id": w.job_awaiting_review(query=True)}}
        if role == "organizer" else {}),
    Row("POST", "/v1/jobs/{job_id}/reject", (401, 403, 403, 200, 403),
        lambda w, role: {"path": {"job_id": w.job_awaiting_review()} if role == "organizer"
                         else {}, "json": {"reason": "too fine"}}),
    Row("GET", "/v1/budget", (401, 200, 200, 200, 403)),
    Row("GET", "/v1/schedule", (401, 200, 200, 200, 403)),
    Row("PUT", "/v1/teams/{team}/budgets/{dataset}", (401, 403, 403, 200, 403),
        lambda w, _: {"json": {"epsilon": 50.0}}),
    Row("GET", "/v1/populations", (401, 403, 403, 200, 403)),
    Row("PUT", "/v1/populations/{population}", (401, 403, 403, 200, 403),
        lambda w, _: {"json": {"epsilon": 100_000.0}}),
    Row("GET", "/v1/audit", (401, 403, 403, 200, 403)),
    Row("GET", "/v1/audit/verify", (401, 403, 403, 200, 403)),
    Row("POST", "/v1/nodes", (401, 403, 403, 201, 403),
        lambda w, _: {"json": {"name": w.unique("node")}}),
    Row("GET", "/v1/node/datasets", (401, 403, 403, 403, 200)),
]  # fmt: skip


#: SQLite in `make unit`; PostgreSQL too in `make test` (a second server and every row again).
MATRIX_DATABASES = ["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres,
                                                                 pytest.mark.slow])]  # fmt: skip


@pytest.fixture(scope="module", params=MATRIX_DATABASES)
def world(
    request: pytest.FixtureRequest, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with _database(request.param) as url:
        label = f"matrix-{request.param}"
        d = start_fake_deployment(tmp_path_factory.mktemp(label), soda, url, node=label)
        try:
            d.organizer.create_team("team-scratch")
            other = d.new_contestant("team-other", "bo")
            own = d.new_contestant("team-own", "ana")
            own.set_password(PASSWORD)
            d.organizer.set_budget_cap("team-own", "cards_tiny", 100.0)
            d.organizer.set_budget_cap("team-other", "cards_tiny", 100.0)
            node = d.organizer.create_node(label)  # the node holding the data
            tokens = {"anonymous": None, "other": other.token, "own": own.token,
                      "organizer": d.organizer.token, "node": node["token"]}  # fmt: skip
            world = World(d.server.url, soda, tokens, d.organizer, own, "ana")
            yield world
            world.http.close()
        finally:
            d.server.stop()


class _database:
    """A server's database: SQLite in its data directory (None) or a fresh PostgreSQL one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._pg: Any = None

    def __enter__(self) -> str | None:
        if self.kind == "sqlite":
            return None
        self._pg = postgres_database()
        return str(self._pg.__enter__())

    def __exit__(self, *exc: object) -> None:
        if self._pg is not None:
            self._pg.__exit__(*exc)


def test_every_route_is_in_the_matrix(world: World) -> None:
    schema = httpx.get(f"{world.url}/openapi.json").json()
    routes = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops
              if path.startswith("/v1/")}  # fmt: skip
    assert routes == {(row.method, row.path) for row in MATRIX}


@pytest.mark.parametrize("row", [
    pytest.param(row, id=f"{row.method} {row.path}", marks=[pytest.mark.slow] if row.slow else [])
    for row in MATRIX
])  # fmt: skip
def test_each_role_gets_its_answer(world: World, row: Row) -> None:
    defaults = {"team": "team-own", "contest": "soda-test", "name": world.own_user,
                "dataset": "cards_tiny", "number": "2",
                "population": "transport_cards"}  # fmt: skip
    shared = {"job_id": None, "licence_id": None, "token_id": None}
    answers = {}
    for role in ROLES:
        request = row.make(world, role)
        path_values = {**defaults, **request.pop("path", {})}
        for key in shared:
            if f"{{{key}}}" in row.path and key not in path_values:
                shared[key] = shared[key] or _owned(world, key)
                path_values[key] = shared[key]
        token = world.tokens[role]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = world.url + row.path.format(**path_values)
        response = world.http.request(row.method, url, headers=headers, **request)
        answers[role] = response.status_code
        if response.status_code >= 400:
            body = response.json()
            assert set(body) >= {"error", "message"} and body["message"], body
    assert answers == dict(zip(ROLES, row.expect, strict=True))


def _owned(world: World, key: str) -> str:
    """One of team A's things, for roles that only read it (or are refused before using it)."""
    if key == "job_id":
        return world.job_awaiting_review()
    if key == "licence_id":
        return world.licence()
    return world.spare_token()


def test_contestants_see_only_their_own_teams_things(world: World) -> None:
    other = UnseenClient(world.url, world.tokens["other"])
    own_jobs = {job["id"] for job in world.own.jobs()}
    assert own_jobs and not own_jobs & {job["id"] for job in other.jobs()}
    assert {b["team"] for b in other.budget()} == {"team-other"}
    assert {r["team"] for r in other.results()} <= {"team-other"}
    assert all("code" not in job and "logs" not in job for job in other.jobs())
    assert Path(world.soda.full).exists()
