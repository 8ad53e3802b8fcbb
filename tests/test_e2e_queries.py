"""Query mode end to end over HTTP: a plan built with the client's builder, run by trusted code
on the full data's blocks, released at the user level with every cell of the key domain."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from client.api import UnseenError
from client.plans import Query, col
from privacy.query import DatasetPolicy, block_partials, parse_plan
from tests.conftest import TEST_BLOCKS, Deployment, SodaData
from tests.test_e2e_jobs import budget_on

pytestmark = pytest.mark.docker

PLAN = (
    Query()
    .where(col("event") == "out")
    .group_by("line")
    .count("trips")
    .mean("mean_fare", "fare", lo=0, hi=15)
    .bound(rows_per_unit=3, groups_per_unit=2)
    .to_dict()
)


def exact_counts(soda: SodaData, plan: dict) -> dict[int, float]:
    """The bounded, noiseless counts — computed here from the generator's files, for checking."""
    entry = soda.entries(soda.full)["transport_cards"]
    # Each unit's rows in stored order, as in the blocks (sorted by unit, stably).
    data = pd.read_parquet(soda.full / str(entry["file"])).sort_values("card_id", kind="stable")
    policy = DatasetPolicy(entry["columns"], "card_id", {"fare": (0.0, 15.0)}, entry["key_sets"])
    parsed = parse_plan(plan, policy)
    partials = block_partials(parsed, data, "card_id")
    return {int(c[0]): float(n) for c, n in zip(parsed.cells, partials.counts, strict=True)}


def test_query_is_estimated_run_reviewed_and_released(
    deployment: Deployment, soda: SodaData
) -> None:
    d = deployment
    client = d.new_contestant("team-query", "quinn")
    before = budget_on(client, "transport_cards")

    estimate = {q["name"]: q for q in client.estimate("transport_cards", plan=PLAN, epsilon=1.0)}
    assert set(estimate) == {"count", "sum:fare"}
    assert estimate["count"]["sensitivity"] == 3 * 2 and estimate["count"]["epsilon"] == 0.5
    assert estimate["count"]["noise_scale"] == pytest.approx(6 / 0.5)
    assert estimate["sum:fare"]["sensitivity"] == 3 * 2 * 15
    assert budget_on(client, "transport_cards") == before  # estimating is free

    job = client.query("transport_cards", PLAN, 1.0)
    assert job["mode"] == "query" and job["state"] == "queued" and job["plan"] == PLAN
    done = client.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review" and done["result"] is None
    assert done["progress"] == {
        "blocks_done": TEST_BLOCKS,
        "blocks_total": TEST_BLOCKS,
        "fraction": 1.0,
    }
    assert "report" not in done  # organizer-only

    released = d.organizer.release(job["id"])
    assert released["state"] == "released"
    cells = client.job(job["id"])["result"]
    lines = soda.entries(soda.full)["transport_cards"]["key_sets"]["line"]
    assert len(cells) == 2 * len(lines)  # every line, empty or not, for both aggregates
    assert {c["keys"]["line"] for c in cells} == set(lines)
    trips = {c["keys"]["line"]: c for c in cells if c["name"] == "trips"}
    assert all(c["value"] == int(c["value"]) for c in trips.values())
    assert all(0 <= c["value"] <= 15 for c in cells if c["name"] == "mean_fare")

    # Noise check over all lines: the summed count error has sd sqrt(n)·sigma of the two-sided
    # geometric; 6 sd leaves a false-failure rate below 1e-8.
    exact = exact_counts(soda, PLAN)
    a = math.exp(-0.5 / 6)
    sigma = math.sqrt(2 * a) / (1 - a)
    error = sum(trips[line]["value"] - exact.get(line, 0.0) for line in lines)
    assert abs(error) < 6 * sigma * math.sqrt(len(lines))

    after = budget_on(client, "transport_cards")
    assert after["spent"] == pytest.approx(before["spent"] + 1.0)
    assert after["reserved"] == pytest.approx(before["reserved"])


def test_median_and_p90_by_line_come_from_one_noisy_histogram(
    deployment: Deployment, soda: SodaData
) -> None:
    d = deployment
    client = d.new_contestant("team-quantiles", "qiu")
    plan = (
        Query()
        .group_by("line")
        .quantile("median_fare", "fare", 0.5, lo=0, hi=15, bins=60)
        .quantile("p90_fare", "fare", 0.9, lo=0, hi=15, bins=60)
        .bound(rows_per_unit=3, groups_per_unit=2)
        .to_dict()
    )
    (noise,) = client.estimate("transport_cards", plan=plan, epsilon=2.0)
    assert noise["name"] == "hist:fare" and noise["epsilon"] == 2.0  # one histogram, all of ε
    assert noise["sensitivity"] == 6 and "rank error" in noise["describes"]

    job = client.query("transport_cards", plan, 2.0)
    assert client.wait(job["id"], timeout=300)["state"] == "awaiting_review"
    d.organizer.release(job["id"])
    cells = client.job(job["id"])["result"]
    entry = soda.entries(soda.full)["transport_cards"]
    lines = entry["key_sets"]["line"]
    assert len(cells) == 2 * len(lines)
    assert all(0 <= c["value"] <= 15 and c["epsilon"] == 2.0 for c in cells)

    data = pd.read_parquet(soda.full / str(entry["file"])).sort_values("card_id", kind="stable")
    kept = data[data.groupby(["card_id"]).cumcount() < 3]  # a rough truth: bounding barely bites
    within = 0
    for cell in cells:
        fares = kept.loc[kept["line"] == cell["keys"]["line"], "fare"].clip(0, 15)
        truth = float(fares.quantile(0.5 if cell["name"] == "median_fare" else 0.9))
        within += abs(cell["value"] - truth) <= cell["error_bound_95"] + 0.25
    assert within >= 0.8 * len(cells)


@pytest.mark.parametrize(
    ("plan", "status", "code", "says"),
    [
        ({"group_by": ["card_id"], "aggregates": [{"name": "n", "op": "count"}]},
         422, "bad_plan", "privacy unit"),
        ({"group_by": [{"name": "t", "expr": {"col": "ts"}}],
          "aggregates": [{"name": "n", "op": "count"}]}, 422, "bad_plan", "needs delta"),
        ({"filter": {"op": "exec", "args": [{"lit": 1}]},
          "aggregates": [{"name": "n", "op": "count"}]}, 422, "bad_plan", "unknown operator"),
        ({"aggregates": [{"name": "n", "op": "count"}], "max_rows_per_unit": 10_000},
         422, "bad_plan", "max_rows_per_unit"),
    ],
)  # fmt: skip
def test_bad_plans_are_refused_before_any_budget(
    deployment: Deployment, plan: dict, status: int, code: str, says: str
) -> None:
    client = deployment.contestant
    before = budget_on(client, "transport_cards")
    with pytest.raises(UnseenError) as caught:
        client.query("transport_cards", plan, 0.5)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert says in caught.value.message
    assert budget_on(client, "transport_cards") == before


def test_unknown_dataset_and_exhausted_budget(deployment: Deployment) -> None:
    client = deployment.new_contestant("team-query-poor", "pia")
    with pytest.raises(UnseenError) as unknown:
        client.query("nope", PLAN, 0.5)
    assert unknown.value.status == 404 and "transport_cards" in unknown.value.message
    with pytest.raises(UnseenError) as broke:
        client.query("transport_cards", PLAN, 10.5)
    assert broke.value.status == 422  # more than any job may ask for
    left = budget_on(client, "transport_cards")["remaining"]
    with pytest.raises(UnseenError) as refused:
        for _ in range(int(left // 4) + 1):
            client.query("transport_cards", PLAN, 4.0)
    assert refused.value.code == "budget_exceeded" and "left" in refused.value.message
    assert (
        budget_on(client, "transport_cards")["spent"]
        + budget_on(client, "transport_cards")["reserved"]
        <= 10.0 + 1e-9
    )


def rush_one_budget(d: Deployment, team: str, user: str) -> None:
    """10 queries and 10 aggregate jobs of ε=1 fired at once against a cap of 5: exactly 5 get
    in, whatever their mode, and exactly ε=5 is spent once they ran."""
    client = d.new_contestant(team, user)
    d.organizer.set_budget_cap(team, "cards_tiny", 5.0)
    quick = "def analyze(df):\n    return {'n': float(len(df))}\n"

    def attempt(index: int) -> str:
        try:
            if index % 2:
                return client.query("cards_tiny", PLAN, 1.0)["id"]
            outputs = [{"name": "n", "lo": 0, "hi": 1e5}]
            return client.submit("cards_tiny", quick, outputs, 1.0)["id"]
        except UnseenError as exc:
            assert exc.code == "budget_exceeded", exc
            return ""

    with ThreadPoolExecutor(max_workers=20) as pool:
        accepted = [job for job in pool.map(attempt, range(20)) if job]
    assert len(accepted) == 5
    budget = budget_on(client, "cards_tiny")
    assert budget["spent"] + budget["reserved"] == pytest.approx(5.0)
    for job in accepted:
        assert client.wait(job, timeout=300)["state"] == "awaiting_review"
    budget = budget_on(client, "cards_tiny")
    assert (budget["spent"], budget["reserved"]) == (pytest.approx(5.0), pytest.approx(0.0))


def test_concurrent_queries_and_jobs_share_one_budget_and_never_overspend(
    deployment: Deployment,
) -> None:
    rush_one_budget(deployment, "team-query-rush", "quentin")


# --- keys without a public set: partition selection and the δ budget --------------------------

OPEN_LINES = (
    Query().group_by("line").count("trips").bound(rows_per_unit=2, groups_per_unit=1).to_dict()
)


@pytest.fixture(scope="module")
def open_lines(deployment: Deployment, soda: SodaData) -> str:
    """The card data registered again without a public key set for ``line``."""
    registration = soda.registration("transport_cards", 8, as_name="cards_open_lines")
    registration["key_sets"] = {
        k: v for k, v in dict(registration["key_sets"]).items() if k != "line"
    }
    deployment.organizer.register_dataset(**registration)
    return "cards_open_lines"


def test_keys_without_a_public_set_are_chosen_by_partition_selection(
    deployment: Deployment, soda: SodaData, open_lines: str
) -> None:
    d = deployment
    client = d.new_contestant("team-open-keys", "olek")
    estimate = {q["name"]: q for q in client.estimate(open_lines, plan=OPEN_LINES, epsilon=1.0,
                                                      delta=1e-7)}  # fmt: skip
    assert set(estimate) == {"keys", "count"} and estimate["keys"]["epsilon"] == 0.5
    threshold = estimate["keys"]["error_bound_95"]
    assert "partition selection" in estimate["keys"]["describes"]

    job = client.query(open_lines, OPEN_LINES, 1.0, delta=1e-7)
    assert job["delta"] == 1e-7
    assert client.wait(job["id"], timeout=300)["state"] == "awaiting_review"
    d.organizer.release(job["id"])
    cells = client.job(job["id"])["result"]
    budget = budget_on(client, open_lines)
    assert budget["delta_spent"] == pytest.approx(1e-7) and budget["delta_reserved"] == 0
    charges = {e["action"]: e["detail"] for e in d.organizer.audit(job=job["id"])}
    assert charges["budget.reserved"] == {"job": job["id"], "epsilon": 1.0, "delta": 1e-7}
    assert charges["budget.charged"] == {"job": job["id"], "epsilon": 1.0, "delta": 1e-7}
    with pytest.raises(UnseenError) as forbidden:
        client.audit()
    assert forbidden.value.status == 403

    entry = soda.entries(soda.full)["transport_cards"]
    data = pd.read_parquet(soda.full / str(entry["file"]))
    riders = data.sort_values("card_id", kind="stable").drop_duplicates("card_id")
    units = riders.groupby("line")["card_id"].nunique()  # G = 1: each card's first line
    released = {c["keys"]["line"]: c["value"] for c in cells}
    assert released, "no line passed the threshold"
    assert set(released) <= set(units.index)
    for line, count in units.items():  # far above the threshold: released; far below: not
        if count > threshold + 60:
            assert int(line) in released
        if count < threshold - 60:
            assert int(line) not in released


def test_the_delta_budget_is_reserved_atomically_and_refused_when_spent(
    deployment: Deployment, open_lines: str
) -> None:
    """20 partition-selection queries of δ = 1e-7 fired at once against a δ cap of 5e-7 (and
    plenty of ε): exactly 5 get in, the rest are refused naming δ."""
    d = deployment
    client = d.new_contestant("team-delta-rush", "delia")
    d.organizer.set_budget_cap("team-delta-rush", open_lines, 10.0, delta=5e-7)

    def attempt(_: int) -> str:
        try:
            return client.query(open_lines, OPEN_LINES, 0.1, delta=1e-7)["id"]
        except UnseenError as exc:
            assert exc.code == "budget_exceeded" and "delta" in exc.message, exc
            return ""

    with ThreadPoolExecutor(max_workers=20) as pool:
        accepted = [job for job in pool.map(attempt, range(20)) if job]
    assert len(accepted) == 5
    for job in accepted:
        assert client.wait(job, timeout=300)["state"] == "awaiting_review"
    budget = budget_on(client, open_lines)
    assert budget["delta_spent"] == pytest.approx(5e-7) and budget["delta_remaining"] == 0
    assert budget["spent"] == pytest.approx(0.5)
