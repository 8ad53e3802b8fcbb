"""The synthetic SODA-like generator: deterministic, realistic in the ways analyses rely on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from syndata.cli import app
from syndata.soda import (
    DATASETS,
    MAX_FARE,
    SIZES,
    WEEK_END,
    WEEK_START,
    bus_network,
    fare_for_km,
    generate_frame,
    generate_table,
    metro_network,
    resolve_size,
    write_all,
    write_dataset,
)

TEST = SIZES["test"]


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {name: generate_frame(name, "test", 1) for name in DATASETS}


@pytest.fixture(scope="module")
def cards(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return frames["transport_cards"]


def test_same_seed_same_data_other_seed_other_data() -> None:
    for name in DATASETS:
        first = generate_table(name, TEST, 5)
        assert first.equals(generate_table(name, TEST, 5)), name
        assert not first.equals(generate_table(name, TEST, 6)), name


def test_public_networks_do_not_depend_on_the_seed_or_size() -> None:
    """A sample (other seed, other size) must share stations, lines and routes with the data."""
    sample = generate_frame("transport_cards", "test", 2)
    full = generate_frame("transport_cards", "demo", 1)
    line_of = pd.concat([sample, full]).groupby("station_id")["line"].nunique()
    assert (line_of == 1).all()
    assert metro_network().line.tolist() == metro_network.__wrapped__().line.tolist()
    assert bus_network().stops.tolist() == bus_network.__wrapped__().stops.tolist()


@pytest.mark.parametrize("name", list(DATASETS))
def test_columns_and_types_are_the_declared_schema(name: str) -> None:
    table = generate_table(name, TEST, 1)
    assert table.schema.equals(DATASETS[name].schema)
    frame = table.to_pandas()
    assert str(frame["ts"].dtype) == "datetime64[us]"
    assert frame["ts"].between(WEEK_START, WEEK_END, inclusive="left").all()
    assert frame[DATASETS[name].unit_column].notna().all()


def test_sizes_are_about_what_they_promise(frames: dict[str, pd.DataFrame]) -> None:
    assert 18_000 <= len(frames["transport_cards"]) <= 22_000  # "test" is about 20k card rows
    assert 5_000 <= len(frames["taxi_gps"]) <= 15_000
    assert 3_000 <= len(frames["bus_events"]) <= 8_000
    bench = SIZES["bench"]
    assert bench.cards == 2_000_000 and len(metro_network().line) == 500


@pytest.mark.parametrize("name", list(DATASETS))
def test_values_lie_within_the_published_bounds_and_key_sets(
    name: str, frames: dict[str, pd.DataFrame]
) -> None:
    frame, info = frames[name], DATASETS[name]
    for column, (lo, hi) in info.bounds.items():
        assert frame[column].between(lo, hi).all(), column
    for column, keys in info.key_sets.items():
        assert set(frame[column].unique()) <= set(keys), column


def test_every_key_of_the_small_key_sets_occurs(frames: dict[str, pd.DataFrame]) -> None:
    cards, taxi, bus = frames["transport_cards"], frames["taxi_gps"], frames["bus_events"]
    assert set(cards["event"]) == {"in", "out"} and set(bus["event"]) == {"arrive", "depart"}
    assert set(taxi["occupied"]) == {0, 1}
    assert cards["line"].nunique() == 20


def test_trips_are_in_out_pairs_on_one_card_out_after_in(cards: pd.DataFrame) -> None:
    ordered = cards.sort_values(["card_id", "ts"], kind="stable").reset_index(drop=True)
    taps_in, taps_out = ordered.iloc[0::2], ordered.iloc[1::2]
    assert (taps_in["event"] == "in").all() and (taps_out["event"] == "out").all()
    assert (taps_in["card_id"].to_numpy() == taps_out["card_id"].to_numpy()).all()
    minutes = (taps_out["ts"].to_numpy() - taps_in["ts"].to_numpy()) / np.timedelta64(1, "m")
    assert ((minutes >= 10) & (minutes <= 90)).all()
    assert (taps_in["station_id"].to_numpy() != taps_out["station_id"].to_numpy()).all()


def test_a_card_is_on_one_trip_at_a_time(cards: pd.DataFrame) -> None:
    ordered = cards.sort_values(["card_id", "ts"], kind="stable")
    same_card = ordered["card_id"].eq(ordered["card_id"].shift())
    next_in = ordered["event"].eq("in") & same_card
    gap = ordered["ts"].diff().dt.total_seconds() / 60
    assert (gap[next_in] >= 5).all()


def test_fares_are_charged_on_exit_from_the_table(cards: pd.DataFrame) -> None:
    assert (cards.loc[cards["event"] == "in", "fare"] == 0).all()
    fares = cards.loc[cards["event"] == "out", "fare"]
    assert fares.between(3, MAX_FARE).all() and fares.nunique() >= 4
    assert (fares == fares.round()).all()


def test_fare_table() -> None:
    km = np.array([0.5, 6.0, 6.1, 16.0, 16.1, 26.0, 500.0])
    assert fare_for_km(km).tolist() == [3, 3, 4, 4, 5, 5, MAX_FARE]


def test_rush_hours_are_busier_than_the_night(cards: pd.DataFrame) -> None:
    hours = cards.loc[cards["event"] == "in", "ts"].dt.hour.value_counts()
    rush = hours.reindex([7, 8, 17, 18], fill_value=0).mean()
    midday = hours.reindex([11, 12, 13, 14], fill_value=0).mean()
    night = hours.reindex([1, 2, 3, 4], fill_value=0).mean()
    assert rush > 2 * midday and midday > 10 * max(night, 1)


def test_weekdays_are_busier_than_weekends(cards: pd.DataFrame) -> None:
    days = cards["ts"].dt.day_of_week.value_counts()
    assert days.reindex(range(5)).min() > 1.3 * days.reindex([5, 6]).max()


def test_trips_per_card_are_heavy_tailed(cards: pd.DataFrame) -> None:
    trips = cards.groupby("card_id").size() / 2
    assert trips.median() <= 2
    assert (trips <= 2).mean() > 0.5
    assert (trips >= 10).sum() >= 0.02 * len(trips)  # commuters
    assert trips.max() >= 8 * trips.median()


def test_station_popularity_is_skewed(cards: pd.DataFrame) -> None:
    counts = cards["station_id"].value_counts()
    top_tenth = counts.iloc[: len(counts) // 10].sum()
    assert top_tenth > 0.25 * counts.sum()


def test_taxi_trajectories_move_plausibly(frames: dict[str, pd.DataFrame]) -> None:
    taxi = frames["taxi_gps"]
    same = taxi["plate"].eq(taxi["plate"].shift())
    gaps = taxi["ts"].diff().dt.total_seconds()[same]
    assert gaps.between(30, 60).all()
    km = np.hypot(taxi["lon"].diff() * 95, taxi["lat"].diff() * 111)[same]
    assert (km <= 120 * gaps / 3600 + 1e-9).all()  # no faster than the speed bound
    assert 0.1 < (taxi["speed"] == 0).mean() < 0.5  # waiting at ranks and lights
    assert taxi.groupby("plate")["occupied"].nunique().max() == 2


def test_taxis_are_slower_in_the_rush_hour(frames: dict[str, pd.DataFrame]) -> None:
    taxi = frames["taxi_gps"]
    moving = taxi[taxi["speed"] > 0]
    by_hour = moving.groupby(moving["ts"].dt.hour)["speed"].mean()
    assert by_hour.reindex([8, 18]).mean() < 0.8 * by_hour.reindex([2, 3, 4]).mean()


def test_buses_arrive_then_depart_along_their_route(frames: dict[str, pd.DataFrame]) -> None:
    bus = frames["bus_events"]
    assert bus.groupby("bus_id")["route"].nunique().max() == 1
    arrive, depart = bus.iloc[0::2], bus.iloc[1::2]
    assert (arrive["event"] == "arrive").all() and (depart["event"] == "depart").all()
    assert (arrive["station_id"].to_numpy() == depart["station_id"].to_numpy()).all()
    dwell = (depart["ts"].to_numpy() - arrive["ts"].to_numpy()) / np.timedelta64(1, "s")
    assert ((dwell >= 18) & (dwell <= 120)).all()
    assert bus.groupby("bus_id")["ts"].is_monotonic_increasing.all()
    net = bus_network()
    route = int(bus["route"].iloc[0]) - 1
    stops = net.stops[net.offsets[route] : net.offsets[route] + net.lengths[route]]
    first_trip = arrive["station_id"].to_numpy()[: len(stops)]
    assert first_trip.tolist() == stops.tolist()


def test_chunked_output_equals_in_memory_and_units_do_not_collide(tmp_path: Path) -> None:
    small = replace(TEST, cards=900, taxis=30, buses=5, card_chunk=250, taxi_chunk=7, bus_chunk=2)
    seen: dict[str, list[tuple[int, int]]] = {name: [] for name in DATASETS}
    for name, info in DATASETS.items():
        path = tmp_path / info.file
        rows = write_dataset(
            name, small, 3, path, lambda n, done, total: seen[n].append((done, total))
        )
        table = generate_table(name, small, 3)
        assert pq.read_table(path).equals(table) and rows == table.num_rows
        assert len(seen[name]) > 1 and seen[name][-1][0] == seen[name][-1][1]
        units = table.column(info.unit_column).to_pandas()
        runs = (units != units.shift()).sum()
        assert runs == units.nunique()  # each unit in one run: no id reused across chunks


def test_cli_writes_files_and_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["generate", "--size", "test", "--seed", "3", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["size"] == "test" and manifest["seed"] == 3
    assert [entry["name"] for entry in manifest["datasets"]] == list(DATASETS)
    for entry in manifest["datasets"]:
        info = DATASETS[entry["name"]]
        frame = pd.read_parquet(tmp_path / entry["file"])
        assert len(frame) == entry["rows"] and entry["seed"] == 3 and entry["size"] == "test"
        assert entry["unit_column"] == info.unit_column in frame.columns
        assert list(entry["columns"]) == list(frame.columns)
        assert entry["bounds"] == info.bounds and entry["key_sets"] == info.key_sets
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(info.file for info in DATASETS.values()), "manifest.json"]
    )


def test_written_files_are_byte_identical_for_a_seed(tmp_path: Path) -> None:
    write_all(tmp_path / "a", "test", 4, ["bus_events"])
    write_all(tmp_path / "b", "test", 4, ["bus_events"])
    for name in ("bus_events.parquet", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_cli_only_writes_the_chosen_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["generate", "--size", "test", "--only", "taxi_gps", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "taxi_gps.parquet"]


@pytest.mark.parametrize(
    ("option", "value", "valid"),
    [
        ("--size", "huge", "use one of: test, demo, bench"),
        ("--only", "taxi", "use one of: transport_cards, taxi_gps, bus_events"),
    ],
)
def test_cli_refuses_unknown_values_naming_the_valid_ones(
    tmp_path: Path, option: str, value: str, valid: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["generate", "--size", "test", option, value, "--out", str(tmp_path)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2
    assert valid in result.output and option in result.output
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_library_refuses_an_unknown_size_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="use one of: test, demo, bench"):
        resolve_size("huge")
