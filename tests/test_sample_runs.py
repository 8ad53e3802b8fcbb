"""Runs on the public sample: the contestant's debugging loop — raw values, full logs and
tracebacks, through the same sandbox and parser, without budget."""

from __future__ import annotations

import runpy

import pandas as pd
import pytest

from client.api import UnseenError
from tests.conftest import ROOT, Deployment, SodaData
from tests.test_e2e_jobs import EXAMPLE, FARE_OUTPUTS, budget_on

pytestmark = pytest.mark.docker


def test_sample_run_returns_exact_values_and_logs_without_budget(
    deployment: Deployment, soda: SodaData
) -> None:
    client = deployment.contestant
    before = budget_on(client, "transport_cards")
    code = EXAMPLE + "\nprint('debug: rows seen')\n"
    job = client.run_on_sample("transport_cards", code, FARE_OUTPUTS)
    assert job["target"] == "sample" and job["state"] == "released"
    run = job["sample_run"]
    # The public sample is public: the values are exactly analyze() on it, no noise.
    analyze = runpy.run_path(str(ROOT / "examples" / "mean_fare_by_period.py"))["analyze"]
    expected = analyze(pd.read_parquet(soda.sample / "transport_cards.parquet"))
    assert run["values"] == pytest.approx(expected)
    assert run["outcome"] == "ok" and run["end"] == "exited"
    assert "debug: rows seen" in run["stderr"]
    assert job["result"] is None
    assert budget_on(client, "transport_cards") == before
    assert client.job(job["id"])["sample_run"] == run  # kept, and listed with the team's jobs


def test_sample_run_shows_the_traceback(deployment: Deployment) -> None:
    code = "def analyze(df):\n    x = 1\n    return {'n': x / (len(df) - len(df))}\n"
    run = deployment.contestant.run_on_sample(
        "transport_cards", code, [{"name": "n", "lo": 0, "hi": 1}]
    )["sample_run"]
    assert "ZeroDivisionError" in run["stderr"]
    assert 'analysis.py", line 3' in run["stderr"]
    assert run["outcome"] == "defaulted" and run["end"] == "nonzero_exit"


def test_sample_run_refusals(deployment: Deployment) -> None:
    client = deployment.contestant
    with pytest.raises(UnseenError) as unknown:
        client.run_on_sample("nope", EXAMPLE, FARE_OUTPUTS)
    assert unknown.value.status == 404
    with pytest.raises(UnseenError) as bad:
        client.run_on_sample(
            "transport_cards", "import os\ndef analyze(df):\n  return {}\n", FARE_OUTPUTS
        )
    assert bad.value.status == 422 and "'os'" in bad.value.message
    with pytest.raises(UnseenError) as no_epsilon:
        client.submit("transport_cards", EXAMPLE, FARE_OUTPUTS, None)
    assert no_epsilon.value.status == 422 and "epsilon" in no_epsilon.value.message
