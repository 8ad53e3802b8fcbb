"""Synthetic SODA-like tables (Shanghai Open Data Apps): metro cards, taxi GPS, bus events.

Deterministic for a seed and vectorised: each dataset is generated in chunks of privacy units
(cards, taxis, buses), chunk ``i`` seeded with ``(seed, dataset, i)``, so the 10M-row bench
size streams to Parquet in bounded memory and any chunk can be regenerated on its own.
The shapes are the ones analyses care about: rush-hour peaks, heavy-tailed trips per card,
skewed station popularity, a distance-based fare table, trajectories that move plausibly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WEEK_START = np.datetime64("2026-03-02T00:00:00", "us")  # a Monday
US_PER_MINUTE = 60_000_000
#: A Shanghai-sized box (lon, lat).
LON_RANGE = (120.85, 122.0)
LAT_RANGE = (30.67, 31.88)
KM_PER_DEGREE = 100.0  # rough at this latitude; enough for fares and speeds
MAX_FARE = 15.0
MAX_SPEED = 120.0
#: Relative trip starts per hour of day: a morning and an evening peak, quiet nights.
HOUR_WEIGHTS = np.array(
    [0.2, 0.1, 0.05, 0.05, 0.1, 0.5, 2.0, 6.0, 8.0, 5.0, 2.5, 2.0,
     2.2, 2.0, 2.0, 2.2, 3.0, 6.5, 7.5, 4.5, 2.5, 1.8, 1.2, 0.6]
)  # fmt: skip

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Size:
    cards: int
    trips_per_card: float  # mean; rows ≈ 2 · cards · trips_per_card
    stations: int
    lines: int
    taxis: int
    points_per_taxi: int
    buses: int
    routes: int
    trips_per_bus: int
    chunk_units: int = 200_000


SIZES: dict[str, Size] = {
    "test": Size(2_500, 4.0, 120, 8, 100, 200, 40, 8, 3),
    "demo": Size(25_000, 4.0, 300, 16, 500, 200, 200, 24, 6),
    "bench": Size(2_000_000, 2.5, 500, 20, 20_000, 100, 2_000, 100, 12, 100_000),
}


@dataclass(frozen=True)
class DatasetInfo:
    """How an organizer registers the dataset: its unit, public bounds and key sets."""

    name: str
    file: str
    unit_column: str
    description: str
    bounds: dict[str, list[float]] = field(default_factory=dict)
    key_sets: dict[str, list[object]] = field(default_factory=dict)


def dataset_infos(size: Size) -> list[DatasetInfo]:
    return [
        DatasetInfo(
            "transport_cards",
            "transport_cards.parquet",
            "card_id",
            "Metro card taps: one row per gate event (in/out); fare charged on exit.",
            bounds={"fare": [0.0, MAX_FARE]},
            key_sets={
                "event": ["in", "out"],
                "line": list(range(1, size.lines + 1)),
                "station_id": list(range(1, size.stations + 1)),
            },
        ),
        DatasetInfo(
            "taxi_gps",
            "taxi_gps.parquet",
            "plate",
            "Taxi GPS points every 30-60 s: position, speed, occupancy.",
            bounds={"lon": list(LON_RANGE), "lat": list(LAT_RANGE), "speed": [0.0, MAX_SPEED]},
            key_sets={"occupied": [0, 1]},
        ),
        DatasetInfo(
            "bus_events",
            "bus_events.parquet",
            "bus_id",
            "Bus arrivals and departures at stations along their routes.",
            key_sets={
                "event": ["arrive", "depart"],
                "route": list(range(1, size.routes + 1)),
            },
        ),
    ]


def _chunks(units: int, chunk: int) -> Iterator[tuple[int, int, int]]:
    for index, start in enumerate(range(0, units, chunk)):
        yield index, start, min(units, start + chunk)


def _minutes(values: np.ndarray) -> np.ndarray:
    return WEEK_START + (values * US_PER_MINUTE).astype("int64").astype("timedelta64[us]")


@dataclass(frozen=True)
class StationMap:
    """Metro stations: position, line, popularity. Shared by all chunks of one seed."""

    lon: np.ndarray
    lat: np.ndarray
    line: np.ndarray
    popularity: np.ndarray


def station_map(size: Size, seed: int) -> StationMap:
    rng = np.random.default_rng([seed, 0])
    n = size.stations
    popularity = 1.0 / np.arange(1, n + 1) ** 0.9
    rng.shuffle(popularity)
    return StationMap(
        lon=rng.uniform(121.2, 121.75, n),
        lat=rng.uniform(31.0, 31.45, n),
        line=(np.arange(n) % size.lines + 1).astype("int16")[rng.permutation(n)],
        popularity=popularity / popularity.sum(),
    )


def fare_for_km(km: np.ndarray) -> np.ndarray:
    """Shanghai-style table: 3 yuan up to 6 km, 4 up to 16 km, then +1 per 10 km, capped."""
    extra = np.ceil(np.maximum(km - 16.0, 0.0) / 10.0)
    return np.minimum(np.where(km <= 6.0, 3.0, 4.0 + extra), MAX_FARE)


def cards_chunk(size: Size, seed: int, chunk: int, first: int, stop: int) -> pa.Table:
    rng = np.random.default_rng([seed, 1, chunk])
    stations = station_map(size, seed)
    cards = np.arange(first, stop, dtype="int64") + 10_000_000
    # Heavy tail: most cards ride once or twice a week, commuters ride ten times or more.
    mean_extra = size.trips_per_card - 1.0
    shape = 0.6
    trips = 1 + rng.negative_binomial(shape, shape / (shape + mean_extra), len(cards))
    card_of_trip = np.repeat(cards, trips)
    n = len(card_of_trip)
    day = rng.integers(0, 7, n)
    hour = rng.choice(24, n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    start = day * 1440 + hour * 60 + rng.uniform(0, 60, n)
    origin = rng.choice(size.stations, n, p=stations.popularity)
    destination = rng.choice(size.stations, n, p=stations.popularity)
    same = origin == destination
    destination[same] = (destination[same] + 1 + rng.integers(0, size.stations - 1, same.sum())) % (
        size.stations
    )
    km = KM_PER_DEGREE * np.hypot(
        stations.lon[origin] - stations.lon[destination],
        stations.lat[origin] - stations.lat[destination],
    )
    duration = np.clip(8.0 + km * 1.6 + rng.normal(0, 4, n), 10.0, 90.0)
    rows = 2 * n
    event = np.tile(np.array(["in", "out"], dtype=object), n)
    station = np.empty(rows, dtype="int32")
    station[0::2], station[1::2] = origin + 1, destination + 1
    ts = np.empty(rows, dtype="float64")
    ts[0::2], ts[1::2] = start, start + duration
    fare = np.zeros(rows)
    fare[1::2] = fare_for_km(km)
    return pa.table(
        {
            "card_id": pa.array(np.repeat(card_of_trip, 2)),
            "ts": pa.array(_minutes(ts)),
            "station_id": pa.array(station),
            "line": pa.array(stations.line[station - 1]),
            "event": pa.array(event, type=pa.string()),
            "fare": pa.array(fare),
        }
    )


def taxi_chunk(size: Size, seed: int, chunk: int, first: int, stop: int) -> pa.Table:
    rng = np.random.default_rng([seed, 2, chunk])
    taxis = stop - first
    points = rng.integers(size.points_per_taxi // 2, size.points_per_taxi * 3 // 2 + 1, taxis)
    taxi = np.repeat(np.arange(taxis), points)
    n = len(taxi)
    starts = np.concatenate([[0], np.cumsum(points)[:-1]])
    step = rng.uniform(0.5, 1.0, n)  # minutes between fixes
    elapsed = np.cumsum(step)
    elapsed -= np.repeat(elapsed[starts] - step[starts], points)
    begin = rng.uniform(0, 7 * 1440 - 300, taxis)
    moving = rng.random(n) > 0.2
    speed = np.where(moving, np.clip(rng.gamma(4.0, 8.0, n), 0, MAX_SPEED), 0.0)
    heading = np.cumsum(rng.normal(0, 0.6, n))
    dist = speed * step / 60.0 / KM_PER_DEGREE
    dlon, dlat = dist * np.cos(heading), dist * np.sin(heading)
    lon0 = rng.uniform(121.2, 121.75, taxis)
    lat0 = rng.uniform(31.0, 31.45, taxis)
    lon = np.cumsum(dlon)
    lat = np.cumsum(dlat)
    lon -= np.repeat(lon[starts] - dlon[starts], points)
    lat -= np.repeat(lat[starts] - dlat[starts], points)
    segment = rng.integers(10, 40, taxis)
    index_in_taxi = np.arange(n) - np.repeat(starts, points)
    occupied = ((index_in_taxi // np.repeat(segment, points) + taxi) % 2).astype("int8")
    plates = np.array([f"SH-{first + i:07d}" for i in range(taxis)], dtype=object)
    return pa.table(
        {
            "plate": pa.array(plates[taxi], type=pa.string()),
            "ts": pa.array(_minutes(np.repeat(begin, points) + elapsed)),
            "lon": pa.array(np.clip(np.repeat(lon0, points) + lon, *LON_RANGE)),
            "lat": pa.array(np.clip(np.repeat(lat0, points) + lat, *LAT_RANGE)),
            "speed": pa.array(speed),
            "occupied": pa.array(occupied),
        }
    )


def bus_chunk(size: Size, seed: int, chunk: int, first: int, stop: int) -> pa.Table:
    route_rng = np.random.default_rng([seed, 3])
    stops_per_route = route_rng.integers(10, 31, size.routes)
    rng = np.random.default_rng([seed, 4, chunk])
    buses = np.arange(first, stop, dtype="int64") + 1000
    route = rng.integers(0, size.routes, len(buses))
    trip_bus = np.repeat(np.arange(len(buses)), size.trips_per_bus)
    trip_start = np.sort(rng.uniform(5 * 60, 22 * 60, (len(buses), size.trips_per_bus)), axis=1)
    trip_start = (trip_start + rng.integers(0, 7, (len(buses), 1)) * 1440).ravel()
    stops = stops_per_route[route[trip_bus]]
    visit_trip = np.repeat(np.arange(len(trip_bus)), stops)
    starts = np.concatenate([[0], np.cumsum(stops)[:-1]])
    ordinal = np.arange(len(visit_trip)) - np.repeat(starts, stops)
    travel = rng.uniform(1.5, 4.0, len(visit_trip))
    arrive = (
        np.repeat(trip_start, stops)
        + np.cumsum(travel)
        - np.repeat(np.cumsum(travel)[starts] - travel[starts], stops)
    )
    dwell = rng.uniform(0.3, 2.0, len(visit_trip))
    bus_route = route[trip_bus[visit_trip]]
    station = (bus_route * 37 + ordinal * 7) % (size.stations * 4) + 1
    n = len(visit_trip)
    ts = np.empty(2 * n)
    ts[0::2], ts[1::2] = arrive, arrive + dwell
    return pa.table(
        {
            "bus_id": pa.array(np.repeat(buses[trip_bus[visit_trip]], 2)),
            "route": pa.array(np.repeat(bus_route + 1, 2).astype("int32")),
            "station_id": pa.array(np.repeat(station, 2).astype("int32")),
            "ts": pa.array(_minutes(ts)),
            "event": pa.array(
                np.tile(np.array(["arrive", "depart"], dtype=object), n), type=pa.string()
            ),
        }
    )


GENERATORS = {
    "transport_cards": (cards_chunk, lambda s: s.cards),
    "taxi_gps": (taxi_chunk, lambda s: s.taxis),
    "bus_events": (bus_chunk, lambda s: s.buses),
}


def generate_table(name: str, size: Size, seed: int) -> pa.Table:
    """The whole dataset in memory: for tests and small sizes."""
    make, units = GENERATORS[name]
    parts = [make(size, seed, i, a, b) for i, a, b in _chunks(units(size), size.chunk_units)]
    return pa.concat_tables(parts)


def write_dataset(
    name: str, size: Size, seed: int, path: Path, progress: Progress | None = None
) -> int:
    """Stream the dataset to Parquet chunk by chunk; returns the row count."""
    make, units = GENERATORS[name]
    total_units = units(size)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for index, first, stop in _chunks(total_units, size.chunk_units):
            table = make(size, seed, index, first, stop)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=1_000_000)
            rows += table.num_rows
            if progress is not None:
                progress(name, stop, total_units)
    finally:
        if writer is not None:
            writer.close()
    return rows
