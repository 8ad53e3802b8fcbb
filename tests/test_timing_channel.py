"""The timing channel is closed: what a team sees of a full-data job follows its public schedule.

Two neighbouring datasets (one card's rows apart) and code that sleeps when that card is in its
block: without a schedule, the job on the dataset with the card stalls ~4 s longer (membership
of one person, outside any noise). The contestant's timeline (states, their times, progress,
``updated_at``) must be the same for both, within the scheduler's jitter, while the organizer
still sees the true run. Jitter stated: 250 ms (the worker's hand-off and the 50 ms poll).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from client.api import UnseenClient, UnseenError
from tests.conftest import SodaData, start_deployment

pytestmark = pytest.mark.docker

JITTER_SECONDS = 0.25
SLEEP_SECONDS = 4.0
BLOCK_SECONDS = 5.5
#: start 6 s + ceil(4 blocks / 2 slots) * (T + 0.5 s overhead)
SCHEDULE_SECONDS = 6 + 2 * (BLOCK_SECONDS + 0.5)
#: how much a slot container's start may vary between two runs on a loaded machine
START_JITTER_SECONDS = 2.0
OUTPUTS = [{"name": "ok", "lo": 0, "hi": 1, "default": 0}]


def hunting_code(target: object) -> str:
    return (
        "import time\n"
        "def analyze(df):\n"
        f"    if (df['card_id'] == {target!r}).any():\n"
        f"        time.sleep({SLEEP_SECONDS})\n"
        "    return {'ok': 1.0}\n"
    )


def observe(client: UnseenClient, job_id: str, submitted: float) -> list[dict[str, Any]]:
    """Every distinct thing the team sees, with when it first saw it (from submission)."""
    seen: list[dict[str, Any]] = []
    while True:
        job = client.job(job_id)
        view = {
            "state": job["state"],
            "updated": job["updated_at"],
            "blocks_done": job["progress"]["blocks_done"],
            "error_class": job["error_class"],
        }
        if not seen or any(seen[-1][k] != v for k, v in view.items()):
            seen.append({**view, "at": time.monotonic() - submitted, "job": job})
        if job["state"] in ("awaiting_review", "released", "failed", "rejected"):
            return seen
        time.sleep(0.05)


def first_seen(seen: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """When each (state, blocks done) was first seen, in seconds since submission."""
    changes: dict[tuple[str, int], float] = {}
    for view in seen:
        changes.setdefault((view["state"], view["blocks_done"]), view["at"])
    return changes


def release_early(
    organizer: UnseenClient, contestant: UnseenClient, job_id: str
) -> tuple[str, object]:
    """Release the job the moment its noisy values are stored (long before its schedule
    ends); return what the team sees just after."""
    organizer.wait(job_id, timeout=60)
    organizer.release(job_id)
    seen = contestant.job(job_id)
    return seen["state"], seen["result"]


def seconds_between(later: str, earlier: str) -> float:
    return (pd.Timestamp(later) - pd.Timestamp(earlier)).total_seconds()


@pytest.fixture
def neighbours(soda: SodaData, tmp_path: Path) -> tuple[Path, Path, object]:
    entry = soda.entries(soda.full)["transport_cards"]
    full = pq.read_table(soda.full / str(entry["file"]))  # Arrow: the sample's exact types
    target = full.column("card_id")[full.num_rows // 2].as_py()
    with_card = tmp_path / "with.parquet"
    without_card = tmp_path / "without.parquet"
    pq.write_table(full, with_card)
    pq.write_table(full.filter(pc.not_equal(full.column("card_id"), target)), without_card)
    return with_card, without_card, target


def test_the_contestant_timeline_does_not_depend_on_one_person(
    runner_image: str, soda: SodaData, tmp_path: Path, neighbours: tuple[Path, Path, object]
) -> None:
    env = {
        "UNSEEN_SLOTS": "2",
        "UNSEEN_BLOCK_SECONDS": "10",
        "UNSEEN_SCHEDULE_START_SECONDS": "6",
        "UNSEEN_BLOCK_OVERHEAD_SECONDS": "0.5",
        "UNSEEN_QUERY_SECONDS": "3",
    }
    d = start_deployment(tmp_path / "state", soda, env)
    try:
        with_card, without_card, target = neighbours
        base = soda.registration("transport_cards", 4)
        for name, source in (("with_card", with_card), ("without_card", without_card)):
            d.organizer.register_dataset(**{**base, "name": name, "source_path": str(source)})
        code = hunting_code(target)
        runs = {}
        for name in ("with_card", "without_card"):
            submitted = time.monotonic()
            job = d.contestant.submit(name, code, OUTPUTS, 10.0, block_seconds=BLOCK_SECONDS)
            # the schedule is public at submission: 6 + ceil(4 / 2) * (5.5 + 0.5) = 18 s
            assert job["schedule"] == {
                "block_seconds": BLOCK_SECONDS, "seconds": SCHEDULE_SECONDS, "release_at": None,
            }  # fmt: skip
            with ThreadPoolExecutor(1) as organizer:  # releases as soon as it may
                early = organizer.submit(release_early, d.organizer, d.contestant, job["id"])
                runs[name] = observe(d.contestant, job["id"], submitted)
                assert early.result() == ("running", None)  # what the team saw right after

        # The organizer sees the truth: the card's block slept, nothing defaulted.
        truth = {name: d.organizer.job(seen[-1]["job"]["id"]) for name, seen in runs.items()}
        runs_took = {name: job["report"]["run_seconds"] for name, job in truth.items()}
        assert runs_took["with_card"] >= SLEEP_SECONDS, runs_took
        assert runs_took["with_card"] >= (
            runs_took["without_card"] + SLEEP_SECONDS - START_JITTER_SECONDS
        ), runs_took
        assert all(job["report"]["blocks_defaulted"] == 0 for job in truth.values())
        assert all(took < SCHEDULE_SECONDS for took in runs_took.values()), runs_took

        # The team sees the same life for both: the same changes (state and progress), each
        # first seen at the same time since submission, within the jitter. A job queued for
        # less than the jitter may be caught "queued" by one poll and not by the other.
        lives = {name: first_seen(seen) for name, seen in runs.items()}
        assert set(lives["with_card"]) - {("queued", 0)} == set(lives["without_card"]) - {
            ("queued", 0)
        }, lives
        assert [("running", blocks) for blocks in range(4)] + [("released", 4)] == sorted(
            set(lives["with_card"]) - {("queued", 0)}, key=lambda change: lives["with_card"][change]
        )
        for change, at in lives["with_card"].items():
            other = lives["without_card"].get(change, 0.0)
            assert abs(at - other) <= JITTER_SECONDS, (change, lives)
        for seen in runs.values():
            job = seen[-1]["job"]
            started = next(v for v in seen if v["state"] == "running")["updated"]
            # it changed state exactly at its start plus the public length
            assert seconds_between(job["updated_at"], started) == pytest.approx(
                SCHEDULE_SECONDS, abs=1e-3
            )
            assert job["schedule"]["release_at"] is not None
            assert seconds_between(job["schedule"]["release_at"], started) == pytest.approx(
                SCHEDULE_SECONDS
            )
            assert job["progress"]["fraction"] == 1.0

        # and the released value is right: every block ran its code to the end within T
        for seen in runs.values():
            (value,) = d.contestant.job(seen[-1]["job"]["id"])["result"]
            # noise scale 1 / (4 * 10) = 0.025: 8 scales (P ~ 3e-4) far from a defaulted 0.75
            assert abs(value["value"] - 1.0) <= 8 * value["noise_scale"]
    finally:
        d.server.stop()


def test_a_query_changes_state_at_its_public_length_and_filters_see_the_same(
    runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    env = {"UNSEEN_QUERY_SECONDS": "3"}
    d = start_deployment(tmp_path / "state", soda, env)
    try:
        plan = {"aggregates": [{"name": "n", "op": "count"}], "max_rows_per_unit": 1}
        submitted = time.monotonic()
        job = d.contestant.query("cards_tiny", plan, 1.0)
        assert job["schedule"]["seconds"] == 3.0
        d.organizer.wait(job["id"], timeout=60)
        assert d.organizer.job(job["id"])["state"] == "awaiting_review"
        if time.monotonic() - submitted < 2.5:  # the query itself takes well under a second
            mine = d.contestant.job(job["id"])
            assert mine["state"] == "running"
            # a filter on the state acts on the state the team sees, not the true one
            listed = d.contestant._request("GET", "/v1/jobs", params={"state": "awaiting_review"})
            assert job["id"] not in [j["id"] for j in listed]
        seen = observe(d.contestant, job["id"], submitted)
        started = next(v for v in seen if v["state"] == "running")["updated"]
        assert seconds_between(seen[-1]["job"]["updated_at"], started) == pytest.approx(3.0)
        listed = d.contestant._request("GET", "/v1/jobs", params={"state": "awaiting_review"})
        assert job["id"] in [j["id"] for j in listed]
        report = d.organizer.job(job["id"])["report"]
        assert report["schedule_seconds"] == 3.0 and report["run_seconds"] < 3.0
    finally:
        d.server.stop()


def test_a_block_time_outside_the_node_limits_is_refused_before_any_budget(
    runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    d = start_deployment(tmp_path / "state", soda, {"UNSEEN_BLOCK_SECONDS": "8"})
    try:
        code = "def analyze(df):\n    return {'ok': 1.0}\n"
        with pytest.raises(UnseenError) as refused:
            d.contestant.submit("cards_tiny", code, OUTPUTS, 1.0, block_seconds=9)
        assert refused.value.status == 422 and refused.value.code == "bad_block_seconds"
        assert "between 0.1 and 8" in refused.value.message  # FAST_SCHEDULE: 0.1
        assert not d.contestant.jobs()
        assert all(b["reserved"] == 0 and b["spent"] == 0 for b in d.contestant.budget())
        rules = d.contestant.schedule_rules()
        assert rules["max_block_seconds"] == 8 and rules["slots"] >= 1
        assert rules["sandbox"] == "runc/zygote"  # the suite's servers: UNSEEN_RUNTIME=runc
        # without block_seconds: the node's default, or 3x this code's time on the sample
        default = d.contestant.submit("cards_tiny", code, OUTPUTS, 0.1)
        assert default["schedule"]["block_seconds"] == rules["default_block_seconds"]
        timed = d.contestant.run_on_sample("cards_tiny", code, OUTPUTS)["sample_run"]["seconds"]
        derived = d.contestant.submit("cards_tiny", code, OUTPUTS, 0.1)
        expected = min(8.0, max(0.1, math.ceil(3 * timed / 0.5) * 0.5))
        assert derived["schedule"]["block_seconds"] == expected
    finally:
        d.server.stop()
