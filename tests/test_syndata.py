"""The synthetic SODA-like generator: deterministic, realistic in the ways analyses rely on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from syndata.cli import app
from syndata.soda import (
    LAT_RANGE,
    LON_RANGE,
    MAX_FARE,
    MAX_SPEED,
    SIZES,
    dataset_infos,
    fare_for_km,
    generate_table,
)

TEST = SIZES["test"]


@pytest.fixture(scope="module")
def cards() -> pd.DataFrame:
    return generate_table("transport_cards", TEST, 1).to_pandas()


def test_same_seed_same_data_other_seed_other_data() -> None:
    for name in ("transport_cards", "taxi_gps", "bus_events"):
        first = generate_table(name, TEST, 5)
        assert first.equals(generate_table(name, TEST, 5))
        assert not first.equals(generate_table(name, TEST, 6))


def test_card_columns_and_types(cards: pd.DataFrame) -> None:
    assert list(cards.columns) == ["card_id", "ts", "station_id", "line", "event", "fare"]
    assert str(cards["ts"].dtype) == "datetime64[us]"
    assert cards["card_id"].dtype == np.int64
    assert 15_000 <= len(cards) <= 25_000  # "test" is about 20k card rows


def test_values_lie_within_the_published_bounds_and_key_sets(cards: pd.DataFrame) -> None:
    info = {i.name: i for i in dataset_infos(TEST)}
    card_info = info["transport_cards"]
    assert cards["fare"].between(*card_info.bounds["fare"]).all()
    for column, keys in card_info.key_sets.items():
        assert set(cards[column].unique()) <= set(keys), column
    taxi = generate_table("taxi_gps", TEST, 1).to_pandas()
    assert taxi["lon"].between(*LON_RANGE).all() and taxi["lat"].between(*LAT_RANGE).all()
    assert taxi["speed"].between(0, MAX_SPEED).all()
    assert set(taxi["occupied"].unique()) == {0, 1}
    bus = generate_table("bus_events", TEST, 1).to_pandas()
    assert set(bus["event"].unique()) == {"arrive", "depart"}
    assert set(bus["route"].unique()) <= set(info["bus_events"].key_sets["route"])


def test_trips_are_in_out_pairs_with_fares_on_exit(cards: pd.DataFrame) -> None:
    taps_in = cards.iloc[0::2].reset_index(drop=True)
    taps_out = cards.iloc[1::2].reset_index(drop=True)
    assert (taps_in["event"] == "in").all() and (taps_out["event"] == "out").all()
    assert (taps_in["card_id"] == taps_out["card_id"]).all()
    minutes = (taps_out["ts"] - taps_in["ts"]).dt.total_seconds() / 60
    assert minutes.between(10, 90).all()
    assert (taps_in["fare"] == 0).all() and (taps_out["fare"] >= 3).all()
    assert (taps_in["station_id"] != taps_out["station_id"]).all()


def test_rush_hours_are_busier_than_the_night(cards: pd.DataFrame) -> None:
    hours = cards.loc[cards["event"] == "in", "ts"].dt.hour.value_counts()
    rush = hours.reindex([7, 8, 17, 18], fill_value=0).mean()
    night = hours.reindex([1, 2, 3, 4], fill_value=0).mean()
    assert rush > 10 * max(night, 1)


def test_trips_per_card_are_heavy_tailed(cards: pd.DataFrame) -> None:
    trips = cards.groupby("card_id").size() / 2
    assert trips.median() <= 3
    assert trips.max() >= 8 * trips.median()


def test_fare_table() -> None:
    km = np.array([0.5, 6.0, 6.1, 16.0, 16.1, 26.0, 500.0])
    assert fare_for_km(km).tolist() == [3, 3, 4, 4, 5, 5, MAX_FARE]


def test_taxi_trajectories_move_plausibly() -> None:
    taxi = generate_table("taxi_gps", TEST, 1).to_pandas()
    for _, points in list(taxi.groupby("plate"))[:10]:
        gaps = points["ts"].diff().dt.total_seconds().dropna()
        assert gaps.between(30, 60).all()
        jumps = np.hypot(points["lon"].diff(), points["lat"].diff()).dropna()
        assert jumps.max() < 0.05  # < ~5 km between fixes 30-60 s apart


def test_cli_writes_files_and_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["generate", "--size", "test", "--seed", "3", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    names = [entry["name"] for entry in manifest["datasets"]]
    assert names == ["transport_cards", "taxi_gps", "bus_events"]
    for entry in manifest["datasets"]:
        frame = pd.read_parquet(tmp_path / entry["file"])
        assert len(frame) == entry["rows"]
        assert entry["unit_column"] in frame.columns


def test_cli_refuses_an_unknown_size_naming_the_valid_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["generate", "--size", "huge", "--out", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert "use one of: test, demo, bench" in result.output
