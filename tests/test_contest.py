"""The contest around the sandbox, over real HTTP: round one gives every team the catalog and
samples; round two's full data needs admission, an approved signed licence and verified
identities, and every refusal says all that is missing; contests do not see each other's
datasets; released outputs come out as a results table and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client.api import UnseenError
from tests.conftest import (
    LICENCE_PDF,
    TINY_BLOCKS,
    Deployment,
    SodaData,
    admitted_member,
    start_deployment,
)
from tests.test_e2e_jobs import budget_on

pytestmark = pytest.mark.docker
QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]


def refused(call: object, *args: object, **kwargs: object) -> UnseenError:
    with pytest.raises(UnseenError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


@pytest.fixture(scope="module")
def two_contests(
    runner_image: str, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A server of its own: 'soda-test' (open) and 'later-cup', whose rounds are ahead."""
    d = start_deployment(tmp_path_factory.mktemp("contests"), soda, {"UNSEEN_NODE": "contests"})
    now = datetime.now(UTC)
    d.organizer.create_contest("later-cup")
    d.organizer.set_round("later-cup", 1, now + timedelta(days=2), now + timedelta(days=9))
    d.organizer.set_round("later-cup", 2, now + timedelta(days=10), now + timedelta(days=20))
    registration = soda.registration("transport_cards", TINY_BLOCKS, as_name="later_cards")
    d.organizer.register_dataset(**registration, contest="later-cup")
    yield d
    d.server.stop()


def test_round_two_needs_admission_licence_and_identity_and_says_what_is_missing(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    team = d.organizer.create_team("team-finalist")
    fay = d.organizer.with_token(d.organizer.add_member(team["id"], "fay")["token"])
    assert "cards_tiny" in [ds["name"] for ds in fay.datasets()]  # round one: catalog
    fay.download_sample("cards_tiny", tmp_path / "s.parquet")  # samples: every team

    error = refused(fay.submit, "cards_tiny", QUICK, OUTPUTS, 0.5)
    assert (error.status, error.code) == (403, "not_admitted")
    for missing in ("not admitted", "no signed licence", "identity not yet verified for: fay"):
        assert missing in error.message
    assert budget_on(fay, "cards_tiny")["reserved"] == 0

    assert refused(fay.upload_licence, "team-finalist", b"MZ\x90\x00 not a pdf", "x.pdf").status \
        == 415  # fmt: skip
    too_big = b"%PDF-1.4\n" + b"0" * (10 * 1024 * 1024)
    assert refused(fay.upload_licence, "team-finalist", too_big, "big.pdf").status == 413
    first = fay.upload_licence("team-finalist", LICENCE_PDF, "licence.pdf")
    assert first["status"] == "pending" and first["size"] == len(LICENCE_PDF)
    assert "awaits an organizer" in refused(fay.submit, "cards_tiny", QUICK, OUTPUTS, 0.5).message
    assert refused(d.organizer.reject_licence, first["id"], " ").code == "reason_needed"
    d.organizer.reject_licence(first["id"], "unsigned on page 2")
    assert fay.licences("team-finalist")[0]["reason"] == "unsigned on page 2"
    assert "was rejected" in refused(fay.submit, "cards_tiny", QUICK, OUTPUTS, 0.5).message

    second = fay.upload_licence("team-finalist", LICENCE_PDF, "licence-signed.pdf")
    assert fay.licence_file(second["id"]) == LICENCE_PDF
    d.organizer.approve_licence(second["id"])
    d.organizer.verify_identity("fay")
    status = next(t for t in d.organizer.teams_status() if t["name"] == "team-finalist")
    assert status["full_data_blocked_by"] == [
        "the team is not admitted to round two; the organizers admit finalists"
    ]
    d.organizer.admit("team-finalist")
    job = fay.submit("cards_tiny", QUICK, OUTPUTS, 0.5)
    assert fay.wait(job["id"], timeout=300)["state"] == "awaiting_review"
    actions = {e["action"] for e in d.organizer.audit(limit=50)}
    assert {"licence.uploaded", "licence.rejected", "licence.approved", "identity.verified",
            "team.admission"} <= actions  # fmt: skip


def test_licences_are_private_to_their_team(deployment: Deployment) -> None:
    d = deployment
    owner = admitted_member(d.organizer, "team-private-licence", "gus")
    other = admitted_member(d.organizer, "team-nosy", "hal")
    licence = owner.licences("team-private-licence")[0]
    assert refused(other.licence_file, licence["id"]).status == 404
    assert refused(other.licences, "team-private-licence").status == 404
    assert refused(other.approve_licence, licence["id"]).status == 403
    assert d.organizer.licence_file(licence["id"]) == LICENCE_PDF


def test_rounds_gate_samples_and_contests_hide_each_others_data(
    two_contests: Deployment, tmp_path: Path
) -> None:
    d = two_contests
    d.organizer.create_team("team-later", contest="later-cup")
    early = d.organizer.with_token(d.organizer.add_member("team-later", "ida")["token"])
    assert [ds["name"] for ds in early.datasets()] == ["later_cards"]
    closed = refused(early.download_sample, "later_cards", tmp_path / "s.parquet")
    assert (closed.status, closed.code) == (403, "contest_closed")
    assert "any round of contest 'later-cup' opens" in closed.message
    # Another contest's dataset does not exist for ida.
    hidden = refused(early.download_sample, "cards_tiny", tmp_path / "s.parquet")
    assert hidden.status == 404 and hidden.message.endswith("known datasets: later_cards")
    error = refused(early.submit, "later_cards", QUICK, OUTPUTS, 0.5)
    assert "round two of contest 'later-cup' opens" in error.message
    assert refused(d.organizer.create_team, "team-vague").code == "contest_needed"
    assert [b["datasets"] for b in early.budget()] == [["later_cards"]]


def test_results_table_and_csv_show_released_outputs_with_noise_and_epsilon(
    deployment: Deployment,
) -> None:
    d = deployment
    client = d.new_contestant("team-results", "ivy")
    job = client.submit("cards_tiny", QUICK, OUTPUTS, 0.25)
    client.wait(job["id"], timeout=300)
    d.organizer.release(job["id"])

    mine = client.results()
    assert {row["team"] for row in mine} == {"team-results"}
    row = next(r for r in mine if r["job"] == job["id"])
    assert row["output"] == "n" and row["epsilon"] == pytest.approx(0.25)
    assert row["noise_scale"] > 0 and row["error_bound_95"] > 0
    table = list(csv.DictReader(io.StringIO(d.organizer.results(as_csv=True))))
    ours = [r for r in table if r["job"] == job["id"]]
    assert len(ours) == 1 and float(ours[0]["value"]) == pytest.approx(row["value"])
    assert {"team", "dataset", "noise_scale", "error_bound_95", "epsilon"} <= set(table[0])
    assert len({r["team"] for r in table}) >= 1


def test_contestants_see_only_their_contest(deployment: Deployment) -> None:
    contests = deployment.contestant.contests()
    assert [c["name"] for c in contests] == ["soda-test"]
    assert all(r["open_now"] for r in contests[0]["rounds"])
    assert refused(deployment.contestant.create_contest, "mine").status == 403
