"""DP synthetic public samples through the real server over HTTP and the real CLI: made at
registration or later, charged exactly ε to the population, the full data's schema and types,
the example analysis running on it in the sandbox, and every refusal naming its fix."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from client.api import UnseenClient, UnseenError
from tests.conftest import ROOT, Deployment, SodaData

pytestmark = pytest.mark.docker
EXAMPLE = ROOT / "examples" / "mean_fare_by_period.py"
NAME = "cards_synth"


def unseen(*args: str, url: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UNSEEN_URL": url, "UNSEEN_TOKEN": token, "COLUMNS": "200",
           "NO_COLOR": "1"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "client.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)  # fmt: skip


def population(organizer: UnseenClient, name: str) -> dict:
    return next(p for p in organizer.populations() if name in p["datasets"])


@pytest.fixture(scope="module")
def synthesized(
    deployment: Deployment, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess[str]:
    """cards_synth: the cards' source again (so the cards' population), its sample made by
    `unseen datasets register --synthesize 1` with the generator's manifest (renamed)."""
    entry = {**soda.entries(soda.full)["transport_cards"], "name": NAME}
    manifest = tmp_path_factory.mktemp("synth") / "manifest.json"
    manifest.write_text(json.dumps({"datasets": [entry]}))
    before = population(deployment.organizer, "transport_cards")
    done = unseen(
        "datasets", "register", NAME, "--source", str(soda.full / "transport_cards.parquet"),
        "--manifest", str(manifest), "--synthesize", "1", "--blocks", "2",
        url=deployment.server.url, token=deployment.organizer.token or "",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = population(deployment.organizer, NAME)
    assert after["name"] == before["name"]
    assert round(after["spent"] - before["spent"], 9) == 1.0  # exactly ε, nothing else
    assert round(after["samples_spent"] - before["samples_spent"], 9) == 1.0
    return done


def test_registration_with_synthesize_charges_exactly_epsilon_and_audits_it(
    deployment: Deployment, synthesized: subprocess.CompletedProcess[str]
) -> None:
    assert "its public sample is synthetic: 20,000 rows at ε=1" in synthesized.stdout
    assert "fidelity" in synthesized.stdout and "real rows" in synthesized.stdout
    made = deployment.organizer.audit(action="sample.synthesized")[0]["detail"]
    assert made["dataset"] == NAME and made["epsilon"] == 1.0 and made["rows"] == 20_000
    started = deployment.organizer.audit(action="synthesis.started")[0]["detail"]
    assert started["synthesis"] == made["synthesis"] and started["epsilon"] == 1.0
    assert deployment.organizer.verify_audit()["ok"]
    entry = next(d for d in deployment.contestant.datasets() if d["name"] == NAME)
    assert entry["synthetic"] is True and entry["sample_epsilon"] == 1.0
    assert entry["sample_rows"] == 20_000 and "rows" not in entry  # exact size: organizers'
    plain = next(d for d in deployment.contestant.datasets() if d["name"] == "transport_cards")
    assert plain["synthetic"] is False and plain["sample_epsilon"] is None


def test_the_synthetic_sample_has_the_full_data_schema_dtypes_and_bounded_units(
    deployment: Deployment, soda: SodaData, synthesized: object, tmp_path
) -> None:
    out = deployment.contestant.download_sample(NAME, tmp_path / "s.parquet")
    full = pq.read_table(soda.full / "transport_cards.parquet")
    sample = pq.read_table(out)
    assert sample.schema == full.schema
    assert sample.to_pandas().dtypes.to_dict() == full.to_pandas().dtypes.to_dict()
    frame = sample.to_pandas()
    per_card = frame.groupby("card_id").size()
    assert per_card.max() <= 10 and per_card.sum() == 20_000  # R = 10 rows per unit
    assert set(frame["event"]) <= {"in", "out"} and frame["fare"].between(0, 15).all()
    assert frame["ts"].between(pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-09")).all()
    assert not set(frame["card_id"]) & set(full.column("card_id").to_pylist()[:0])


def test_the_example_analysis_runs_on_it_through_unseen_run_sample(
    deployment: Deployment, synthesized: object
) -> None:
    token = deployment.new_contestant("team-synth", "sam").token or ""
    done = unseen("run", "--sample", str(EXAMPLE), "--dataset", NAME, "--json",
                  url=deployment.server.url, token=token)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["outcome"] == "ok" and run["where"] == "local"
    assert set(run["values"]) == {"mean_fare_morning_peak", "mean_fare_evening_peak",
                                  "mean_fare_offpeak"}  # fmt: skip


def test_the_fidelity_report_is_for_organizers_with_three_columns(
    deployment: Deployment, synthesized: object
) -> None:
    report = deployment.organizer.syntheses(NAME)[0]["report"]
    for way in ("1-way", "2-way"):
        assert set(report["summary"][way]) == {"synthetic", "real_rows", "independent"}
    assert len([m for m in report["marginals"] if len(m["columns"]) == 1]) == 5
    assert report["pairs_selected"] and len(report["pairs"]) == 4  # a spanning tree of 5
    with pytest.raises(UnseenError) as refused:
        deployment.contestant.syntheses(NAME)
    assert refused.value.status == 403
    done = unseen("datasets", "fidelity", NAME, url=deployment.server.url,
                  token=deployment.organizer.token or "")  # fmt: skip
    assert done.returncode == 0 and "charged" in done.stdout and "2-way" in done.stdout
    assert "the default analysis, by event" in done.stdout and "mean_fare (mean)" in done.stdout


def test_the_report_compares_the_organizers_analysis_on_each_table(
    deployment: Deployment, synthesized: object, tmp_path
) -> None:
    """`--analysis PLAN.json`: the plan's exact answers on the full data beside each table's,
    counts at the full data's scale; the real rows' counts land near the full data's."""
    plan = {"group_by": ["line"], "aggregates": [
        {"name": "taps", "op": "count"},
        {"name": "median_fare", "op": "quantile", "column": "fare", "lo": 0, "hi": 15,
         "q": 0.5, "bins": 30}]}  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    done = unseen("datasets", "synthesize", NAME, "-e", "0.5", "--rows", "5000",
                  "--time", "ts:2026-03-02:2026-03-09", "--analysis", str(tmp_path / "plan.json"),
                  url=deployment.server.url, token=deployment.organizer.token or "")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "your analysis, by line" in done.stdout and "median_fare (quantile)" in done.stdout
    analysis = deployment.organizer.syntheses(NAME)[0]["report"]["analysis"]
    assert analysis["plan"] == plan and analysis["default"] is False
    taps = next(r for r in analysis["summary"] if r["aggregate"] == "taps")
    assert taps["cells"] == analysis["cells_total"] // 2 and taps["full_mean_abs"] > 0
    assert taps["real_rows_relative"] < 0.2  # a uniform sample, scaled: close at this size
    assert {"synthetic", "independent"} <= taps.keys()


def test_refusals_name_the_fix_and_charge_nothing(
    deployment: Deployment, soda: SodaData, synthesized: object
) -> None:
    organizer = deployment.organizer
    before = population(organizer, NAME)["spent"]
    week = {"ts": ["2026-03-02", "2026-03-09"]}
    cases = [
        ("nope", {"epsilon": 1, "time_bounds": week}, 404, "unknown_dataset", "known datasets"),
        (NAME, {"epsilon": 1}, 422, "bad_synthesis", "--time ts:START:END"),
        (
            NAME,
            {"epsilon": 1, "time_bounds": week, "bins": {"fare": 0}},
            422,
            "bad_synthesis",
            "bins",
        ),
        (
            NAME,
            {"epsilon": 1, "time_bounds": week, "marginals": [["ts", "nope"]]},
            422,
            "bad_synthesis",
            "two different",
        ),
        (
            NAME,
            {"epsilon": 1, "time_bounds": week, "rows": 2_000_000},
            422,
            "invalid_request",
            "rows",
        ),
        (
            NAME,
            {"epsilon": 1, "time_bounds": {"ts": ["2026-03-09", "2026-03-02"]}},
            422,
            "bad_synthesis",
            "start must be before end",
        ),
        (
            NAME,
            {
                "epsilon": 1,
                "time_bounds": week,
                "analysis": {"group_by": ["card_id"], "aggregates": [{"name": "n", "op": "count"}]},
            },
            422,
            "bad_synthesis",
            "the analysis plan: group_by 'card_id' is the privacy unit itself",
        ),
    ]
    for name, body, status, code, fix in cases:
        with pytest.raises(UnseenError) as refused:
            organizer.synthesize(name, **body)
        assert (refused.value.status, refused.value.code) == (status, code), refused.value.body
        assert fix in refused.value.message
    assert population(organizer, NAME)["spent"] == before


def test_over_the_population_cap_is_a_409_and_the_dataset_waits_for_its_sample(
    deployment: Deployment, soda: SodaData
) -> None:
    organizer = deployment.organizer
    body = soda.registration("taxi_gps", 2, as_name="taxi_synth")
    body.pop("sample_path")
    body.update(
        population="taxi_people",
        population_epsilon=0.5,
        team_epsilon=0.5,
        synthesize={"epsilon": 1, "time_bounds": {"ts": ["2026-03-02", "2026-03-09"]}},
    )
    with pytest.raises(UnseenError) as refused:
        organizer.register_dataset(**body)
    assert (refused.value.status, refused.value.code) == (409, "budget_exceeded")
    assert refused.value.body["cap"] == "population" and refused.value.body["registered"]
    assert "unseen datasets synthesize taxi_synth" in refused.value.message
    assert population(organizer, "taxi_synth")["spent"] == 0
    with pytest.raises(UnseenError) as missing:
        deployment.contestant.download_sample("taxi_synth", soda.full / "never.parquet")
    assert missing.value.code == "no_sample" and "synthesize" in missing.value.message
    made = organizer.synthesize(
        "taxi_synth", epsilon=0.5, rows=2_000, time_bounds={"ts": ["2026-03-02", "2026-03-09"]}
    )
    assert made["state"] == "done" and made["rows"] == 2_000
    taxi = pq.read_table(
        io.BytesIO(organizer._send("GET", "/v1/datasets/taxi_synth/sample").content)
    )
    assert taxi.schema == pq.read_schema(soda.full / "taxi_gps.parquet")
    assert population(organizer, "taxi_synth")["remaining"] == 0
    with pytest.raises(UnseenError) as broke:
        organizer.synthesize(
            "taxi_synth", epsilon=0.1, time_bounds={"ts": ["2026-03-02", "2026-03-09"]}
        )
    assert broke.value.status == 409 and "populations set taxi_people" in broke.value.message


def test_neither_or_both_samples_is_refused(deployment: Deployment, soda: SodaData) -> None:
    body = soda.registration("bus_events", 2, as_name="bus_both")
    body["synthesize"] = {"epsilon": 1}
    with pytest.raises(UnseenError) as both:
        deployment.organizer.register_dataset(**body)
    assert both.value.code == "sample_needed" and "not both" in both.value.message
