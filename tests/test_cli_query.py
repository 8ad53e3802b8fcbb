"""`unseen estimate` and `unseen query` against the real embedded server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Deployment
from tests.test_cli_run import unseen
from tests.test_e2e_jobs import budget_on

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def member(deployment: Deployment) -> str:
    return str(deployment.new_contestant("team-cli-query", "cleo").token)


def test_estimate_then_query_from_the_terminal(deployment: Deployment, member: str) -> None:
    url = deployment.server.url
    contestant = deployment.organizer.with_token(member)
    before = budget_on(contestant, "transport_cards")
    priced = unseen("estimate", "--count-by", "line", "-d", "transport_cards", "-e", "0.5",
                    "--json", url=url, token=member)  # fmt: skip
    assert priced.returncode == 0, priced.stderr
    (count,) = json.loads(priced.stdout)
    assert count["name"] == "count" and count["epsilon"] == 0.5
    assert budget_on(contestant, "transport_cards") == before

    done = unseen("query", "--count-by", "line", "-d", "transport_cards", "-e", "0.5",
                  "--json", url=url, token=member)  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["mode"] == "query" and job["state"] == "awaiting_review"
    assert budget_on(contestant, "transport_cards")["spent"] == pytest.approx(before["spent"] + 0.5)
    deployment.organizer.release(job["id"])
    assert len(contestant.job(job["id"])["result"]) == 20  # one count per public line


def test_a_plan_file_and_the_table_view(
    deployment: Deployment, member: str, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "group_by": ["event"],
                "aggregates": [
                    {"name": "mean_fare", "op": "mean", "column": "fare", "lo": 0, "hi": 15}
                ],
            }
        )
    )
    done = unseen("query", str(plan), "-d", "transport_cards", "-e", "0.2", "--no-wait",
                  url=deployment.server.url, token=member)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "submitted query" in done.stdout and "state: queued" in done.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--count-by", "card_id"], 3, "privacy unit"),
        (["--count-by", "fare"], 3, "needs delta"),
        (["--count-by", "line", "--delta", "1e-8"], 3, "drop it"),
        (["--count-by", "line", "-e", "50"], 1, "refused"),
        ([], 2, "give a PLAN.json or --count-by"),
    ],
)
def test_refusals_are_one_line_with_exit_codes(
    deployment: Deployment, member: str, args: list[str], code: int, says: str
) -> None:
    epsilon = [] if "-e" in args else ["-e", "0.1"]
    done = unseen("query", "-d", "transport_cards", *epsilon, *args,
                  url=deployment.server.url, token=member)  # fmt: skip
    assert done.returncode == code, (done.stdout, done.stderr)
    assert says in done.stderr and "Traceback" not in done.stderr


def test_a_bad_plan_file_is_a_usage_error(
    deployment: Deployment, member: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    done = unseen("estimate", str(broken), "-d", "transport_cards", "-e", "1",
                  url=deployment.server.url, token=member)  # fmt: skip
    assert done.returncode == 2 and "not valid JSON" in done.stderr


def test_budget_refusal_exits_3(deployment: Deployment, member: str) -> None:
    contestant = deployment.organizer.with_token(member)
    left = budget_on(contestant, "cards_tiny")["remaining"]
    for _ in range(int(left // 5)):
        contestant.query("cards_tiny", {"aggregates": [{"name": "n", "op": "count"}]}, 5.0)
    done = unseen("query", "--count-by", "line", "-d", "cards_tiny", "-e", "5", "--no-wait",
                  url=deployment.server.url, token=member)  # fmt: skip
    assert done.returncode == 3 and "left" in done.stderr
