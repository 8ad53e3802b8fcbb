"""End to end over HTTP: real server process, real Docker sandbox, real SQLite.

What a contestant may see of a full-data job is checked field by field: state, coarse error
class, and — once released — noisy values with their noise scale. Never logs or block outcomes.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from client.api import UnseenClient, UnseenError
from tests.conftest import ROOT, TEST_BLOCKS, TINY_BLOCKS, Deployment, SodaData

pytestmark = pytest.mark.docker

EXAMPLE = (ROOT / "examples" / "mean_fare_by_period.py").read_text()
FARE_OUTPUTS = [
    {"name": "mean_fare_morning_peak", "lo": 2.0, "hi": 10.0, "default": 5.0},
    {"name": "mean_fare_evening_peak", "lo": 2.0, "hi": 10.0, "default": 5.0},
    {"name": "mean_fare_offpeak", "lo": 2.0, "hi": 10.0, "default": 5.0},
]
CONTESTANT_FIELDS = {
    "id",
    "dataset",
    "team",
    "mode",
    "target",
    "state",
    "schedule",
    "charge",
    "delta",
    "epsilon",
    "combine",
    "outputs",
    "plan",
    "progress",
    "error_class",
    "review_reason",
    "result",
    "sample_run",
    "created_at",
    "updated_at",
}
ORGANIZER_ONLY = {"code", "pending_values", "report", "logs", "error_detail"}


def budget_on(client: UnseenClient, dataset: str) -> dict[str, float]:
    """The team's budget on the population ``dataset`` belongs to (shared with its twins)."""
    return next(b for b in client.budget() if dataset in b["datasets"])


def run_to_review(
    d: Deployment,
    client: UnseenClient,
    code: str,
    outputs: list[dict],
    dataset: str = "transport_cards",
    epsilon: float = 0.5,
) -> dict:
    job = client.submit(dataset, code, outputs, epsilon)
    assert job["state"] == "queued"
    done = client.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", done
    return done


def test_demo_flow_releases_noisy_values_and_charges_budget(deployment: Deployment) -> None:
    d = deployment
    client = d.new_contestant("team-demo", "dora")
    before = budget_on(client, "transport_cards")
    job = run_to_review(d, client, EXAMPLE, FARE_OUTPUTS, epsilon=1.0)

    # Awaiting review: the team sees the state, not the values.
    assert set(job) == CONTESTANT_FIELDS
    assert job["result"] is None
    assert job["progress"] == {
        "blocks_done": TEST_BLOCKS,
        "blocks_total": TEST_BLOCKS,
        "fraction": 1.0,
    }
    spent = budget_on(client, "transport_cards")
    assert spent["spent"] == pytest.approx(before["spent"] + 1.0)
    assert spent["reserved"] == pytest.approx(0.0)

    pending = d.organizer.job(job["id"])
    assert set(pending) >= ORGANIZER_ONLY
    assert pending["report"]["blocks"] == TEST_BLOCKS
    assert pending["report"]["blocks_defaulted"] == 0
    assert len(pending["pending_values"]) == 3
    assert job["id"] in [j["id"] for j in d.organizer.review_queue()]

    d.organizer.release(job["id"])
    released = client.job(job["id"])
    assert released["state"] == "released"
    assert set(released) == CONTESTANT_FIELDS
    assert [v["name"] for v in released["result"]] == [o["name"] for o in FARE_OUTPUTS]
    for value in released["result"]:
        # ε split over 3 outputs; width 8 averaged over the blocks.
        assert value["epsilon"] == pytest.approx(1.0 / 3)
        assert value["noise_scale"] == pytest.approx(8 / TEST_BLOCKS / (1.0 / 3))
        bound = value["noise_scale"] * math.log(20)  # the discrete tail and grid: a little more
        assert value["error_bound_95"] == pytest.approx(bound, rel=5e-3)
        assert math.isfinite(value["value"])
    # The noisy values the team sees are exactly what the organizer reviewed.
    assert released["result"] == d.organizer.job(job["id"])["pending_values"]
    with pytest.raises(UnseenError) as twice:
        d.organizer.release(job["id"])
    assert twice.value.status == 409


def test_estimate_matches_the_release_plan_and_costs_nothing(deployment: Deployment) -> None:
    client = deployment.new_contestant("team-estimate", "erin")
    before = budget_on(client, "transport_cards")
    plans = client.estimate("transport_cards", FARE_OUTPUTS, 1.0)
    assert [p["noise_scale"] for p in plans] == pytest.approx([8 / TEST_BLOCKS * 3] * 3)
    assert budget_on(client, "transport_cards") == before


def test_budget_refusal_names_what_is_left_and_queues_nothing(deployment: Deployment) -> None:
    d = deployment
    client = d.new_contestant("team-poor", "pat")
    d.organizer.set_budget_cap("team-poor", "transport_cards", 0.3)
    with pytest.raises(UnseenError) as refused:
        client.submit("transport_cards", EXAMPLE, FARE_OUTPUTS, 0.5)
    assert refused.value.status == 409
    assert refused.value.code == "budget_exceeded"
    assert refused.value.body["remaining"] == pytest.approx(0.3)
    assert "lower epsilon" in refused.value.message
    assert client.jobs() == []
    assert budget_on(client, "transport_cards")["reserved"] == 0


def test_unknown_dataset_is_refused_with_the_catalog(deployment: Deployment) -> None:
    with pytest.raises(UnseenError) as refused:
        deployment.contestant.submit("no_such_data", EXAMPLE, FARE_OUTPUTS, 0.1)
    assert refused.value.status == 404
    assert refused.value.code == "unknown_dataset"
    assert "transport_cards" in refused.value.message


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("def analyze(df):\n    return {'x': len(df)\n", "line 2: syntax error"),
        ("def analyse(df):\n    return {}\n", "def analyze(df)"),
    ],
)
def test_bad_code_is_refused_before_budget(
    deployment: Deployment, code: str, fragment: str
) -> None:
    before = budget_on(deployment.contestant, "transport_cards")
    with pytest.raises(UnseenError) as refused:
        deployment.contestant.submit("transport_cards", code, FARE_OUTPUTS, 0.1)
    assert refused.value.status == 422
    assert refused.value.code == "bad_code"
    assert fragment in refused.value.message
    assert budget_on(deployment.contestant, "transport_cards") == before


@pytest.mark.parametrize("epsilon", [1e-300, 0.0009, 11.0])
def test_epsilon_outside_the_public_range_is_refused_before_budget(
    deployment: Deployment, epsilon: float
) -> None:
    """ε = 1e-300 once ran on the full data for 0 units: a free probe. The floor is public."""
    before = budget_on(deployment.contestant, "transport_cards")
    with pytest.raises(UnseenError) as refused:
        deployment.contestant.submit("transport_cards", EXAMPLE, FARE_OUTPUTS, epsilon)
    assert refused.value.status == 422
    assert ("0.001" if epsilon < 1 else "10") in refused.value.message  # names the bound
    assert budget_on(deployment.contestant, "transport_cards") == before


def test_a_lone_surrogate_in_code_is_a_clear_422_not_a_500(deployment: Deployment) -> None:
    """JSON may carry ``\\ud800`` alone; no UTF-8 file holds it, and encoding it used to raise."""
    import httpx

    before = budget_on(deployment.contestant, "transport_cards")
    code = "def analyze(df):\n    return {'x': 1}  # \ud800\n"
    body = {"dataset": "transport_cards", "code": code, "outputs": FARE_OUTPUTS, "epsilon": 0.1}
    response = httpx.post(
        deployment.server.url + "/v1/jobs",
        content=json.dumps(body).encode(),  # ensure_ascii: the surrogate travels as an escape
        headers={
            "Authorization": deployment.contestant._http.headers["authorization"],
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "bad_code"
    assert "line 2" in response.json()["message"] and "surrogate" in response.json()["message"]
    assert budget_on(deployment.contestant, "transport_cards") == before


@pytest.mark.parametrize(
    ("outputs", "fragment"),
    [
        ([], "declare at least one output"),
        ([{"name": "x", "lo": 1, "hi": 0}], "must be smaller"),
        ([{"name": "x", "lo": 0, "hi": 1}, {"name": "x", "lo": 0, "hi": 1}], "twice"),
        ([{"name": "not valid", "lo": 0, "hi": 1}], "identifier"),
        # one float step apart at 5e11: the noise could not cover the value (issue 14)
        ([{"name": "x", "lo": 5e11, "hi": math.nextafter(5e11, math.inf)}], "widen them to"),
    ],
)
def test_undeclared_or_bad_outputs_are_refused(
    deployment: Deployment, outputs: list[dict], fragment: str
) -> None:
    with pytest.raises(UnseenError) as refused:
        deployment.contestant.submit("transport_cards", EXAMPLE, outputs, 0.1)
    assert refused.value.status == 422
    assert fragment in refused.value.message


def test_malformed_requests_get_a_stable_error_shape(deployment: Deployment) -> None:
    import httpx

    url = deployment.server.url + "/v1/jobs"
    headers = {"Authorization": deployment.contestant._http.headers["authorization"],
               "Content-Type": "application/json"}  # fmt: skip
    for body in (b"{not json", b"[]", json.dumps({"dataset": "x"}).encode()):
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 422
        assert set(response.json()) == {"error", "message"}
    untyped = httpx.post(url, content=b"{}", headers={"Authorization": headers["Authorization"]})
    assert untyped.status_code == 415 and "application/json" in untyped.json()["message"]
    response = httpx.post(url, json={"dataset": "transport_cards"})
    assert response.status_code == 401
    assert "Bearer" in response.json()["message"]


def test_contestants_cannot_act_as_organizers(deployment: Deployment) -> None:
    with pytest.raises(UnseenError) as refused:
        deployment.contestant.create_team("sneaky")
    assert refused.value.status == 403
    with pytest.raises(UnseenError) as refused:
        deployment.contestant.register_dataset(
            name="x", source_path="/etc/passwd", sample_path="/etc/passwd", unit_column="x"
        )
    assert refused.value.status == 403


def test_blocks_that_raise_take_defaults_and_the_job_still_releases(
    deployment: Deployment, soda: SodaData
) -> None:
    """One card lives in exactly one block: code that raises on seeing it fails one block."""
    d = deployment
    cards = pd.read_parquet(soda.full / "transport_cards.parquet", columns=["card_id"])
    target = int(cards["card_id"].min())
    code = (
        "def analyze(df):\n"
        f"    if (df['card_id'] == {target}).any():\n"
        "        raise RuntimeError('odd block out')\n"
        "    return {'n': float(len(df))}\n"
    )
    outputs = [{"name": "n", "lo": 0, "hi": 100000, "default": 0}]
    job = run_to_review(d, d.contestant, code, outputs)
    organizer_view = d.organizer.job(job["id"])
    assert organizer_view["report"]["blocks_defaulted"] == 1
    assert organizer_view["report"]["outcomes"]["ok"] == TEST_BLOCKS - 1
    assert "odd block out" in organizer_view["logs"]
    d.organizer.release(job["id"])
    seen = d.contestant.job(job["id"])
    assert seen["state"] == "released"
    assert "odd block out" not in json.dumps(seen)


def test_printed_data_never_reaches_the_contestant(deployment: Deployment) -> None:
    d = deployment
    marker = "LEAK-5f1c"
    code = (
        "import pandas as pd\n"
        "def analyze(df):\n"
        f"    print('{marker}', df.head(50).to_csv())\n"
        f"    print('{marker}', file=pd.core.common.sys.stderr)  # slips past the policy\n"
        "    return {'n': float(len(df))}\n"
    )
    outputs = [{"name": "n", "lo": 0, "hi": 100000}]
    job = run_to_review(d, d.contestant, code, outputs)
    d.organizer.release(job["id"])
    assert d.contestant.job(job["id"])["sample_run"] is None
    seen = json.dumps([d.contestant.job(job["id"]), d.contestant.jobs()])
    assert marker not in seen
    assert "card_id" not in seen
    assert marker in d.organizer.job(job["id"])["logs"]


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ("return 'not a dict'", "defaulted"),
        ("return {'n': 1.0, 'extra': 2.0}", "defaulted"),
        ("return {'n': float('nan')}", "partial"),
        ("return {'n': 'x' * 10_000_000}", "partial"),
        # fd 1 is the contestant's stdout, re-pointed to the organizer-only log: no effect
        (
            "import pandas as pd; os = pd.io.common.os; "
            'os.write(1, b\'{"status": "ok", "values": {"n": 1}}\\n\' * 9); return {}',
            "partial",
        ),
        # fd 3 is the harness's result channel: flooding it makes the block garbage
        (
            "import pandas as pd; os = pd.io.common.os; os.write(3, b'x' * 5_000_000); "
            "return {'n': 1.0}",
            "defaulted",
        ),
    ],
)
def test_garbage_outputs_are_replaced_by_defaults(
    deployment: Deployment, body: str, outcome: str
) -> None:
    d = deployment
    code = f"def analyze(df):\n    {body}\n"
    outputs = [{"name": "n", "lo": 0, "hi": 10, "default": 3}]
    job = run_to_review(d, d.contestant, code, outputs, dataset="cards_tiny", epsilon=0.1)
    report = d.organizer.job(job["id"])["report"]
    assert report["outcomes"] == {outcome: TINY_BLOCKS}
    assert set(d.contestant.job(job["id"])) == CONTESTANT_FIELDS


def test_hanging_block_times_out_and_the_job_completes(deployment: Deployment) -> None:
    d = deployment
    code = "def analyze(df):\n    while True:\n        pass\n"
    outputs = [{"name": "n", "lo": 0, "hi": 10}]
    job = run_to_review(d, d.contestant, code, outputs, dataset="cards_tiny", epsilon=0.1)
    report = d.organizer.job(job["id"])["report"]
    assert report["run_ends"] == {"timeout": TINY_BLOCKS}
    assert report["blocks_defaulted"] == TINY_BLOCKS


def test_rejected_output_is_never_shown_and_still_costs(deployment: Deployment) -> None:
    d = deployment
    client = d.new_contestant("team-reject", "rita")
    job = run_to_review(d, client, EXAMPLE, FARE_OUTPUTS, epsilon=0.5)
    d.organizer.reject(job["id"], "outputs too fine-grained for this round")
    seen = client.job(job["id"])
    assert seen["state"] == "rejected"
    assert seen["result"] is None
    assert seen["review_reason"] == "outputs too fine-grained for this round"
    assert budget_on(client, "transport_cards")["spent"] == pytest.approx(0.5)


def test_other_teams_jobs_are_invisible(deployment: Deployment) -> None:
    d = deployment
    other = d.new_contestant("team-other", "otto")
    job = other.submit("cards_tiny", EXAMPLE, FARE_OUTPUTS, 0.1)
    with pytest.raises(UnseenError) as hidden:
        d.contestant.job(job["id"])
    assert hidden.value.status == 404
    assert job["id"] not in [j["id"] for j in d.contestant.jobs()]
    other.wait(job["id"], timeout=300)
