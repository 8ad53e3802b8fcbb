"""Every time the API sends is ISO 8601 in UTC ending in ``Z`` (issue 16, "Accounts"): SQLite
gives back naive times and PostgreSQL the session's zone, so this walks the real answers of
every JSON GET route of a server that has run and released a job, as an organizer and as a
contestant, on both databases, and looks at every string that reads like a time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.api import UnseenClient
from tests.conftest import DATABASES, LICENCE_PDF, SodaData, start_fake_deployment
from tests.test_login_throttle import database

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
#: Routes whose answer is a file, not JSON.
FILES = {"/v1/datasets/{name}/sample", "/v1/licences/{licence_id}/file"}


def times(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(where, text) for every string in a JSON value that reads like a time."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from times(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from times(item, f"{where}[{index}]")
    elif isinstance(value, str) and TIME.match(value):
        yield where, value


@pytest.mark.parametrize("kind", DATABASES)
def test_every_time_in_every_answer_ends_in_z(tmp_path: Path, soda: SodaData, kind: str) -> None:
    with database(kind, tmp_path) as url:
        d = start_fake_deployment(tmp_path / "server", soda, url, node=f"times-{kind}")
        try:
            _walk(d.server.url, d.organizer, d.contestant)
        finally:
            d.server.stop()


def _walk(url: str, organizer: UnseenClient, contestant: UnseenClient) -> None:
    job = contestant.submit("cards_tiny", QUICK, [{"name": "n", "lo": 0, "hi": 1e5}], 0.1)
    assert contestant.wait(job["id"], timeout=60, interval=0.05)["state"] == "awaiting_review"
    organizer.release(job["id"])
    licence = contestant.upload_licence("team-alpha", LICENCE_PDF, "again.pdf")
    values = {"job_id": job["id"], "team": "team-alpha", "name": "cards_tiny",
              "licence_id": licence["id"], "contest": "soda-test"}  # fmt: skip
    schema = httpx.get(f"{url}/openapi.json").json()
    seen: list[tuple[str, str]] = []
    for path, operations in schema["paths"].items():
        if "get" not in operations or path in FILES or not path.startswith("/v1/"):
            continue
        for client in (organizer, contestant):
            headers = {"Authorization": f"Bearer {client.token}"}
            response = httpx.get(url + path.format(**values), headers=headers, timeout=30)
            if not response.headers.get("content-type", "").startswith("application/json"):
                continue
            seen += [(f"GET {path}{where}", text) for where, text in times(response.json())]
    # And the answers of the writes that hand back a time.
    team = organizer.create_team("team-times")
    organizer.add_member(team["id"], "tim", password="times in utc, please")
    issued = UnseenClient(url).login("tim", "times in utc, please")
    seen += [(f"POST /v1/login{w}", t) for w, t in times(issued)]
    seen += [(f"POST /v1/jobs{w}", t) for w, t in times(job)]
    assert any(w.startswith("POST /v1/login.expires_at") for w, _ in seen)
    wrong = [(where, text) for where, text in seen if not text.endswith("Z")]
    assert not wrong, wrong[:10]
    places = {where.split("[")[0].split(".")[0] for where, _ in seen}
    for route in ("GET /v1/jobs", "GET /v1/tokens", "GET /v1/audit", "GET /v1/contests",
                  "GET /v1/teams/{team}/licences", "GET /v1/results"):  # fmt: skip
        assert route in places, sorted(places)
