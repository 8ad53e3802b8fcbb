"""The catalog and registration: public samples only, private sizes hidden, bad declarations
refused with the fix, nothing half-registered."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from client.api import UnseenError
from tests.conftest import TEST_BLOCKS, Deployment, SodaData

pytestmark = pytest.mark.docker


def test_contestant_catalog_hides_the_exact_size(deployment: Deployment) -> None:
    seen = {d["name"]: d for d in deployment.contestant.datasets()}
    cards = seen["transport_cards"]
    assert cards["unit_column"] == "card_id"
    assert cards["blocks"] == TEST_BLOCKS
    assert cards["bounds"] == {"fare": [0.0, 15.0]}
    assert set(cards["key_sets"]["event"]) == {"in", "out"}
    assert "rows" not in cards and "units" not in cards
    organizer_view = {d["name"]: d for d in deployment.organizer.datasets()}["transport_cards"]
    assert organizer_view["rows"] > 0 and organizer_view["units"] > 0


def test_sample_download_is_the_organizers_sample(
    deployment: Deployment, soda: SodaData, tmp_path: Path
) -> None:
    path = deployment.contestant.download_sample("transport_cards", tmp_path / "s.parquet")
    downloaded = pd.read_parquet(path)
    pd.testing.assert_frame_equal(
        downloaded, pd.read_parquet(soda.sample / "transport_cards.parquet")
    )
    full = pd.read_parquet(soda.full / "transport_cards.parquet")
    assert not downloaded.equals(full.head(len(downloaded)))
    with pytest.raises(UnseenError) as missing:
        deployment.contestant.download_sample("nope", tmp_path / "x.parquet")
    assert missing.value.status == 404


def registration(soda: SodaData, **changes: object) -> dict[str, object]:
    body = soda.registration("taxi_gps", 4, as_name="taxi_bad")
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "status", "fragment"),
    [
        ({"source_path": "/nonexistent.parquet"}, 422, "not an absolute path to a file"),
        ({"source_path": "relative.parquet"}, 422, "not an absolute path"),
        ({"unit_column": "driver"}, 422, "columns are"),
        ({"bounds": {"plate": [0, 1]}}, 422, "non-numeric"),
        ({"bounds": {"speed": [5, 1]}}, 422, "must be <"),
        ({"key_sets": {"colour": ["red"]}}, 422, "does not have"),
        ({"name": "Bad-Name"}, 422, "invalid request"),
        ({"name": "transport_cards"}, 409, "already registered"),
    ],
)
def test_bad_registrations_are_refused_with_the_fix(
    deployment: Deployment, soda: SodaData, changes: dict[str, object], status: int, fragment: str
) -> None:
    with pytest.raises(UnseenError) as refused:
        deployment.organizer.register_dataset(**registration(soda, **changes))
    assert refused.value.status == status
    assert fragment in refused.value.message
    assert "taxi_bad" not in [d["name"] for d in deployment.organizer.datasets()]


def test_sample_must_be_separate_and_of_the_same_schema(
    deployment: Deployment, soda: SodaData
) -> None:
    body = registration(soda)
    with pytest.raises(UnseenError) as same:
        deployment.organizer.register_dataset(**{**body, "sample_path": body["source_path"]})
    assert same.value.code == "sample_is_source"
    other_schema = str(soda.sample / "bus_events.parquet")
    with pytest.raises(UnseenError) as mismatch:
        deployment.organizer.register_dataset(**{**body, "sample_path": other_schema})
    assert mismatch.value.code == "sample_schema_mismatch"
    assert "same columns" in mismatch.value.message
