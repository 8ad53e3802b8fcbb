"""`unseen estimate` and `unseen query` against the real embedded server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Deployment
from tests.test_cli_run import unseen
from tests.test_e2e_jobs import budget_on
from tests.test_plan_format import readme_plan

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


def test_the_readmes_plan_json_prices_as_documented(
    deployment: Deployment, member: str, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(readme_plan()))
    priced = unseen("estimate", str(plan), "-d", "transport_cards", "-e", "1", "--json",
                    url=deployment.server.url, token=member)  # fmt: skip
    assert priced.returncode == 0, priced.stderr
    quantities = {q["name"]: q for q in json.loads(priced.stdout)}
    assert {"count", "sum:fare", "hist:fare"} <= set(quantities)
    assert {(q["max_rows_per_unit"], q["max_groups_per_unit"]) for q in quantities.values()} == {
        (3, 2)
    }
    assert quantities["count"]["sensitivity"] == 6  # G·R


def test_count_by_takes_its_bounds_and_the_estimate_names_the_one_that_drives_the_error(
    deployment: Deployment, member: str
) -> None:
    def estimate(*flags: str) -> dict[str, object]:
        done = unseen("estimate", "--count-by", "line", *flags, "-d", "transport_cards", "-e",
                      "1", "--json", url=deployment.server.url, token=member)  # fmt: skip
        assert done.returncode == 0, done.stderr
        (count,) = json.loads(done.stdout)
        return count

    default = estimate()
    bounded = estimate("--rows-per-unit", "4", "--groups-per-unit", "1")
    assert bounded["sensitivity"] == 4
    assert default["sensitivity"] == default["max_rows_per_unit"] * default["max_groups_per_unit"]
    assert bounded["noise_scale"] < default["noise_scale"]

    rows_lead = unseen("estimate", "--count-by", "line", "--rows-per-unit", "8",
                       "--groups-per-unit", "2", "-d", "transport_cards", "-e", "1",
                       url=deployment.server.url, token=member)  # fmt: skip
    assert rows_lead.returncode == 0, rows_lead.stderr
    assert "G·R = 2 x 8 = 16" in rows_lead.stdout
    assert "R = 8 rows per unit per cell drives it" in rows_lead.stdout
    assert "--rows-per-unit" in rows_lead.stdout
    groups_lead = unseen("estimate", "--count-by", "line", "--rows-per-unit", "1",
                         "--groups-per-unit", "3", "-d", "transport_cards", "-e", "1",
                         url=deployment.server.url, token=member)  # fmt: skip
    assert "G = 3 cells per unit drives it" in groups_lead.stdout


@pytest.mark.parametrize(
    ("flags", "code", "says"),
    [
        (["--rows-per-unit", "0"], 2, "--rows-per-unit"),
        (["--rows-per-unit", "100000"], 3, "max_rows_per_unit must be an integer from 1 to"),
        (["--groups-per-unit", "-1"], 2, "--groups-per-unit"),
    ],
)
def test_bounds_out_of_range_are_one_line(
    deployment: Deployment, member: str, flags: list[str], code: int, says: str
) -> None:
    done = unseen("estimate", "--count-by", "line", *flags, "-d", "transport_cards", "-e", "1",
                  url=deployment.server.url, token=member)  # fmt: skip
    assert done.returncode == code, (done.stdout, done.stderr)
    assert says in done.stderr and "Traceback" not in done.stderr


def test_a_query_runs_with_the_bounds_given_on_the_command_line(
    deployment: Deployment, member: str
) -> None:
    done = unseen("query", "--count-by", "line", "--rows-per-unit", "2", "--groups-per-unit",
                  "1", "-d", "transport_cards", "-e", "0.2", "--no-wait", "--json",
                  url=deployment.server.url, token=member)  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = deployment.organizer.job(json.loads(done.stdout)["id"])
    assert job["plan"]["max_rows_per_unit"] == 2 and job["plan"]["max_groups_per_unit"] == 1
