"""Synthetic SODA-like tables (Shanghai Open Data Apps): metro cards, taxi GPS, bus events.

Deterministic for a seed and vectorised. Each dataset is generated in chunks of privacy units
(cards, taxis, buses); chunk ``i`` draws from ``default_rng([seed, dataset, i])``, so the
10M-row bench size streams to Parquet in bounded memory and the output does not depend on
anything but (size, seed). The metro and bus networks are public facts: they come from a fixed
seed and are the same for every size and seed, so a public sample (another seed, another size)
and the full data share stations, lines, routes and key sets.

The shapes are the ones analyses care about: weekday rush-hour peaks and quiet nights,
heavy-tailed trips per card (occasional riders and commuters), skewed station popularity, a
distance-based fare table, taxi trajectories that move plausibly and slow down in rush hours,
buses that run their routes back and forth.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# --- public constants ------------------------------------------------------------------------

WEEK_START = np.datetime64("2026-03-02T00:00:00", "us")  # a Monday
WEEK_DAYS = 7
WEEK_END = WEEK_START + np.timedelta64(WEEK_DAYS, "D")
US_PER_MINUTE = 60_000_000
#: A Shanghai-sized box (lon, lat) and People's Square, the centre of the city.
LON_RANGE = (120.85, 122.0)
LAT_RANGE = (30.67, 31.88)
CENTRE = (121.47, 31.23)
KM_PER_DEG_LON = 95.3  # at 31° N
KM_PER_DEG_LAT = 111.2
MAX_FARE = 15.0
MAX_SPEED = 120.0
METRO_LINES = 20
STATIONS_PER_LINE = 25
METRO_STATIONS = METRO_LINES * STATIONS_PER_LINE
BUS_ROUTES = 150
BUS_STOPS = 1_500
#: Seed of the public networks: fixed, so every sample and full dataset agree on them.
NETWORK_SEED = 20260302

#: Relative trip starts per hour on a weekday (besides commutes) and on a weekend day.
WEEKDAY_HOURS = np.array(
    [0.3, 0.1, 0.05, 0.05, 0.1, 0.6, 2.0, 4.5, 5.0, 3.0, 2.0, 2.0,
     2.3, 2.0, 2.0, 2.3, 3.0, 4.5, 5.0, 3.5, 2.5, 2.0, 1.3, 0.7]
)  # fmt: skip
WEEKEND_HOURS = np.array(
    [0.5, 0.2, 0.05, 0.05, 0.1, 0.3, 0.8, 1.5, 2.5, 3.5, 4.0, 4.0,
     4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.8, 3.5, 3.0, 2.5, 1.6, 0.9]
)  # fmt: skip
#: Weekend days see fewer non-commute trips than weekdays.
DAY_WEIGHTS = np.array([1.0, 1.0, 1.0, 1.0, 1.1, 0.9, 0.8])
#: Road speed factor per hour: free-flowing at night, congested in the peaks.
CONGESTION = np.array(
    [1.3, 1.35, 1.4, 1.4, 1.35, 1.2, 0.9, 0.6, 0.55, 0.75, 0.9, 0.9,
     0.9, 0.9, 0.9, 0.85, 0.75, 0.6, 0.55, 0.7, 0.9, 1.0, 1.1, 1.2]
)  # fmt: skip

COMMUTER_SHARE = 0.08  # cards that commute on weekdays: the head of the heavy tail
COMMUTE_PROBABILITY = 0.85  # a commuter rides to work on a given weekday
EXTRA_TRIP_SHAPE = 0.5  # negative binomial shape of non-commute trips: small => heavy tail
OCCASIONAL_EXTRA_MEAN = 0.9  # occasional cards: 1 + NB(mean 0.9) trips a week
COMMUTER_EXTRA_MEAN = 1.0
MIN_TRIP_GAP_MINUTES = 5  # between one exit and the next entry on the same card
TAXI_SEGMENT_POINTS = 25  # mean fixes per vacant/occupied stretch
BUS_TRIPS_PER_DAY = 10  # at most: no trip starts after the last bus
LAST_BUS_MINUTE = 22 * 60 + 30

Progress = Callable[[str, int, int], None]
"""Called with (dataset, units done, units total) after each chunk."""


# --- sizes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """Unit counts per dataset, and how many units go into one chunk (bounds memory)."""

    cards: int  # ≈ 5 card rows per card (2.5 trips, in + out)
    taxis: int
    points_per_taxi: int  # mean GPS fixes per taxi shift (uniform in 0.5x..1.5x)
    buses: int
    bus_days: int  # consecutive days each bus runs; ≈ 420 events per bus-day
    card_chunk: int = 100_000
    taxi_chunk: int = 2_000
    bus_chunk: int = 200


SIZES: dict[str, Size] = {
    "test": Size(cards=4_000, taxis=50, points_per_taxi=200, buses=6, bus_days=2),
    "demo": Size(cards=40_000, taxis=500, points_per_taxi=200, buses=20, bus_days=7),
    "bench": Size(cards=2_000_000, taxis=10_000, points_per_taxi=300, buses=1_000, bus_days=7),
}


def resolve_size(size: Size | str) -> Size:
    """A Size from its name; the error names the valid ones."""
    if isinstance(size, Size):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; use one of: {', '.join(SIZES)}")
    return SIZES[size]


# --- registration metadata -------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """How an organizer registers the dataset: unit column, public bounds and key sets."""

    name: str
    file: str
    unit_column: str
    description: str
    schema: pa.Schema
    bounds: dict[str, list[float]] = field(default_factory=dict)
    key_sets: dict[str, list[str | int]] = field(default_factory=dict)
    #: Public time ranges (ISO): the grid a synthetic sample's timestamps are binned on.
    time_bounds: dict[str, list[str]] = field(default_factory=dict)

    def manifest_entry(self) -> dict[str, object]:
        """JSON-ready registration metadata (fresh copies, safe to mutate)."""
        return {
            "name": self.name,
            "file": self.file,
            "description": self.description,
            "unit_column": self.unit_column,
            "columns": {f.name: str(f.type) for f in self.schema},
            "bounds": {column: list(pair) for column, pair in self.bounds.items()},
            "key_sets": {column: list(keys) for column, keys in self.key_sets.items()},
            "time_bounds": {column: list(pair) for column, pair in self.time_bounds.items()},
        }


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="transport_cards",
            file="transport_cards.parquet",
            unit_column="card_id",
            description=(
                "Metro card taps, one row per gate event: an 'in' and, 10-90 minutes later on "
                "the same card, an 'out' that carries the distance-based fare."
            ),
            schema=pa.schema(
                [
                    ("card_id", pa.int64()),
                    ("ts", pa.timestamp("us")),
                    ("station_id", pa.int32()),
                    ("line", pa.int16()),
                    ("event", pa.string()),
                    ("fare", pa.float64()),
                ]
            ),
            bounds={"fare": [0.0, MAX_FARE]},
            time_bounds={"ts": [str(WEEK_START), str(WEEK_END)]},
            key_sets={
                "event": ["in", "out"],
                "line": list(range(1, METRO_LINES + 1)),
                "station_id": list(range(1, METRO_STATIONS + 1)),
            },
        ),
        DatasetInfo(
            name="taxi_gps",
            file="taxi_gps.parquet",
            unit_column="plate",
            description="Taxi GPS fixes every 30-60 s of a shift: position, speed, occupancy.",
            schema=pa.schema(
                [
                    ("plate", pa.string()),
                    ("ts", pa.timestamp("us")),
                    ("lon", pa.float64()),
                    ("lat", pa.float64()),
                    ("speed", pa.float64()),
                    ("occupied", pa.int8()),
                ]
            ),
            bounds={"lon": list(LON_RANGE), "lat": list(LAT_RANGE), "speed": [0.0, MAX_SPEED]},
            key_sets={"occupied": [0, 1]},
            time_bounds={"ts": [str(WEEK_START), str(WEEK_END)]},
        ),
        DatasetInfo(
            name="bus_events",
            file="bus_events.parquet",
            unit_column="bus_id",
            description="Bus arrivals and departures at the stops of their routes, back and forth.",
            schema=pa.schema(
                [
                    ("bus_id", pa.int64()),
                    ("route", pa.int32()),
                    ("station_id", pa.int32()),
                    ("ts", pa.timestamp("us")),
                    ("event", pa.string()),
                ]
            ),
            key_sets={
                "event": ["arrive", "depart"],
                "route": list(range(1, BUS_ROUTES + 1)),
                "station_id": list(range(1, BUS_STOPS + 1)),
            },
            time_bounds={"ts": [str(WEEK_START), str(WEEK_END)]},
        ),
    )
}


# --- public networks -------------------------------------------------------------------------


def _frozen(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


@dataclass(frozen=True)
class MetroNetwork:
    """Metro stations (index = station_id - 1): position, line, share of trips starting there."""

    lon: np.ndarray
    lat: np.ndarray
    line: np.ndarray
    popularity: np.ndarray


@functools.cache
def metro_network() -> MetroNetwork:
    """Straight-ish lines through the centre, stations ~1-2 km apart, Zipf-like popularity."""
    rng = np.random.default_rng([NETWORK_SEED, 0])
    angle = rng.uniform(0, np.pi, METRO_LINES)
    offset_km = rng.normal(0, 4.0, METRO_LINES)  # lines pass near, not through, the centre
    length_km = rng.uniform(25, 45, METRO_LINES)
    along = np.linspace(-0.5, 0.5, STATIONS_PER_LINE) * length_km[:, None]
    along += rng.normal(0, 0.3, along.shape)
    x = along * np.cos(angle)[:, None] - offset_km[:, None] * np.sin(angle)[:, None]
    y = along * np.sin(angle)[:, None] + offset_km[:, None] * np.cos(angle)[:, None]
    lon = np.clip(CENTRE[0] + x.ravel() / KM_PER_DEG_LON, *LON_RANGE)
    lat = np.clip(CENTRE[1] + y.ravel() / KM_PER_DEG_LAT, *LAT_RANGE)
    line = np.repeat(np.arange(1, METRO_LINES + 1, dtype="int16"), STATIONS_PER_LINE)
    # Station ids are arbitrary labels: shuffle them so they do not spell out the line.
    order = rng.permutation(METRO_STATIONS)
    zipf = 1.0 / rng.permutation(np.arange(1, METRO_STATIONS + 1)) ** 0.6
    central = 0.3 + np.exp(-np.hypot(x.ravel(), y.ravel())[order] / 12.0)
    popularity = zipf * central
    network = MetroNetwork(lon[order], lat[order], line[order], popularity / popularity.sum())
    _frozen(network.lon, network.lat, network.line, network.popularity)
    return network


@dataclass(frozen=True)
class BusNetwork:
    """Bus routes as ordered stop lists: route r runs ``stops[offsets[r]:offsets[r + 1]]``."""

    stops: np.ndarray  # stop ids, 1-based
    offsets: np.ndarray
    lengths: np.ndarray


@functools.cache
def bus_network() -> BusNetwork:
    """Routes of 12-30 distinct stops; stops are shared between routes, as at interchanges."""
    rng = np.random.default_rng([NETWORK_SEED, 1])
    lengths = rng.integers(12, 31, BUS_ROUTES)
    ranked = np.argsort(rng.random((BUS_ROUTES, BUS_STOPS)), axis=1)
    keep = np.arange(BUS_STOPS) < lengths[:, None]
    stops = (ranked[keep] + 1).astype("int32")  # row-major: route by route, in route order
    network = BusNetwork(stops, _starts(lengths), lengths)
    _frozen(network.stops, network.offsets, network.lengths)
    return network


# --- vectorised helpers ----------------------------------------------------------------------


def _starts(counts: np.ndarray) -> np.ndarray:
    """Index of each group's first element when groups are consecutive runs of ``counts``."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype("int64")


def _cumsum_within(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum that restarts at every group (consecutive runs of ``counts``)."""
    total = np.cumsum(values)
    present = counts > 0
    first = _starts(counts)[present]
    before = total[first] - values[first]
    return total - np.repeat(before, counts[present])


def _timestamps(minutes: np.ndarray) -> np.ndarray:
    """Minutes since the week start -> datetime64[us]."""
    return WEEK_START + np.rint(minutes * US_PER_MINUTE).astype("int64").astype("timedelta64[us]")


def _reflect(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold a walk back into [low, high] like a mirror; never moves two points further apart."""
    width = high - low
    folded = np.mod(values - low, 2 * width)
    return low + width - np.abs(folded - width)


def _labels(values: Iterable[str], codes: np.ndarray) -> pa.Array:
    """A string column from small integer codes, without a Python object per row."""
    return pa.array(list(values), pa.string()).take(pa.array(codes))


def _other(rng: np.random.Generator, this: np.ndarray, that: np.ndarray, n: int) -> None:
    """Redraw ``that`` (in place, uniformly among the others) wherever it equals ``this``."""
    same = this == that
    that[same] = (that[same] + 1 + rng.integers(0, n - 1, same.sum())) % n


def fare_for_km(km: np.ndarray) -> np.ndarray:
    """Shanghai-style table: 3 yuan up to 6 km, 4 up to 16 km, then +1 per 10 km, capped."""
    extra = np.ceil(np.maximum(km - 16.0, 0.0) / 10.0)
    return np.minimum(np.where(km <= 6.0, 3.0, 4.0 + extra), MAX_FARE)


def network_km(origin: np.ndarray, destination: np.ndarray) -> np.ndarray:
    """Track distance between station indices: straight line times a detour factor."""
    net = metro_network()
    dx = (net.lon[origin] - net.lon[destination]) * KM_PER_DEG_LON
    dy = (net.lat[origin] - net.lat[destination]) * KM_PER_DEG_LAT
    return 1.3 * np.hypot(dx, dy)


# --- transport cards -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trips:
    card: np.ndarray  # chunk-local card index
    start: np.ndarray  # minutes since the week start
    origin: np.ndarray  # station index
    destination: np.ndarray


def _commute_trips(
    rng: np.random.Generator, commuter: np.ndarray, home: np.ndarray, work: np.ndarray
) -> _Trips:
    """Home -> work around 08:00 and back around 18:00 on most weekdays."""
    rides = (rng.random((len(commuter), 5)) < COMMUTE_PROBABILITY) & commuter[:, None]
    card, day = np.nonzero(rides)
    morning = day * 1440 + np.clip(rng.normal(8 * 60, 35, len(card)), 6 * 60, 10.5 * 60)
    evening = day * 1440 + np.clip(rng.normal(18 * 60, 50, len(card)), 16 * 60, 22 * 60)
    return _Trips(
        card=np.concatenate([card, card]),
        start=np.concatenate([morning, evening]),
        origin=np.concatenate([home[card], work[card]]),
        destination=np.concatenate([work[card], home[card]]),
    )


def _other_trips(rng: np.random.Generator, commuter: np.ndarray) -> _Trips:
    """Shopping, leisure, errands: a heavy-tailed count per card, weekday/weekend hour profiles."""
    mean = np.where(commuter, COMMUTER_EXTRA_MEAN, OCCASIONAL_EXTRA_MEAN)
    shape = EXTRA_TRIP_SHAPE
    count = rng.negative_binomial(shape, shape / (shape + mean)) + ~commuter
    card = np.repeat(np.arange(len(commuter)), count)
    n = len(card)
    day = rng.choice(WEEK_DAYS, n, p=DAY_WEIGHTS / DAY_WEIGHTS.sum())
    weekday_hour = rng.choice(24, n, p=WEEKDAY_HOURS / WEEKDAY_HOURS.sum())
    weekend_hour = rng.choice(24, n, p=WEEKEND_HOURS / WEEKEND_HOURS.sum())
    hour = np.where(day < 5, weekday_hour, weekend_hour)
    popularity = metro_network().popularity
    origin = rng.choice(METRO_STATIONS, n, p=popularity)
    destination = rng.choice(METRO_STATIONS, n, p=popularity)
    _other(rng, origin, destination, METRO_STATIONS)
    return _Trips(card, day * 1440 + hour * 60 + rng.uniform(0, 60, n), origin, destination)


def _one_at_a_time(
    card: np.ndarray, start_us: np.ndarray, length_us: np.ndarray, cards: int
) -> np.ndarray:
    """Push each trip to start no earlier than the previous one on its card ended (+ a gap).

    Rows are sorted by (card, start). The recurrence s'[i] = max(s[i], s'[i-1] + length[i-1])
    becomes s' = C + cummax(s - C) with C the exclusive per-card sum of lengths; an offset per
    card keeps the running maximum from leaking between cards. Exact in int64 microseconds.
    """
    spacing = np.int64(1) << 42  # ≈ 51 days in µs: wider than any card's span of values
    if cards >= (1 << 20):
        raise ValueError("card chunk too large for the per-card offset")
    counts = np.bincount(card, minlength=cards)
    before = _cumsum_within(length_us, counts) - length_us
    offset = card.astype("int64") * spacing
    return before + np.maximum.accumulate(start_us - before + offset) - offset


def cards_chunk(size: Size, seed: int, chunk: int, first: int, stop: int) -> pa.Table:
    """Cards ``first..stop-1``: in/out tap pairs, one trip at a time per card, by card and time."""
    rng = np.random.default_rng([seed, 1, chunk])
    popularity = metro_network().popularity
    cards = stop - first
    commuter = rng.random(cards) < COMMUTER_SHARE
    home = rng.choice(METRO_STATIONS, cards, p=popularity)
    work = rng.choice(METRO_STATIONS, cards, p=popularity)
    _other(rng, home, work, METRO_STATIONS)
    commutes, others = _commute_trips(rng, commuter, home, work), _other_trips(rng, commuter)
    card = np.concatenate([commutes.card, others.card])
    start = np.concatenate([commutes.start, others.start])
    origin = np.concatenate([commutes.origin, others.origin])
    destination = np.concatenate([commutes.destination, others.destination])
    km = network_km(origin, destination)
    # Walking, waiting and riding at ~32 km/h including changes; 10-90 minutes gate to gate.
    duration = np.clip(6.0 + km / 32.0 * 60.0 + rng.normal(0, 3, len(km)), 10.0, 90.0)

    order = np.lexsort((start, card))
    card, origin, destination, km = card[order], origin[order], destination[order], km[order]
    duration_us = np.rint(duration[order] * US_PER_MINUTE).astype("int64")
    start_us = np.rint(start[order] * US_PER_MINUTE).astype("int64")
    gap_us = MIN_TRIP_GAP_MINUTES * US_PER_MINUTE
    start_us = _one_at_a_time(card, start_us, duration_us + gap_us, cards)
    end_us = start_us + duration_us
    within = end_us < WEEK_DAYS * 1440 * US_PER_MINUTE  # a pushed-back trip may leave the week
    trips = int(within.sum())

    net = metro_network()
    station = np.empty(2 * trips, dtype="int64")
    station[0::2], station[1::2] = origin[within], destination[within]
    offset_us = np.empty(2 * trips, dtype="int64")
    offset_us[0::2], offset_us[1::2] = start_us[within], end_us[within]
    fare = np.zeros(2 * trips)
    fare[1::2] = fare_for_km(km[within])
    return pa.table(
        {
            "card_id": pa.array(np.repeat(card[within] + first + 10_000_000, 2), pa.int64()),
            "ts": pa.array(WEEK_START + offset_us.astype("timedelta64[us]")),
            "station_id": pa.array((station + 1).astype("int32")),
            "line": pa.array(net.line[station]),
            "event": _labels(["in", "out"], np.tile(np.array([0, 1], dtype="int8"), trips)),
            "fare": pa.array(fare),
        },
        schema=DATASETS["transport_cards"].schema,
    )


# --- taxi GPS --------------------------------------------------------------------------------

PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O, as on real plates


def plates(first: int, stop: int) -> list[str]:
    """Unique plates 'SH-A12345' for taxis ``first..stop-1``; the digits look unordered."""
    return [
        f"SH-{PLATE_LETTERS[(u // 100_000) % len(PLATE_LETTERS)]}{(u * 7919 + 12345) % 100_000:05d}"
        for u in range(first, stop)
    ]


def taxi_chunk(size: Size, seed: int, chunk: int, first: int, stop: int) -> pa.Table:
    """Taxis ``first..stop-1``: one shift each, a fix every 30-60 s, by plate and time.

    Shifts alternate vacant and occupied stretches; some vacant stretches wait at a rank
    (speed 0); moving speed depends on the stretch and on rush-hour congestion. Positions
    integrate speed along a slowly turning heading, folded back into the Shanghai box.
    """
    rng = np.random.default_rng([seed, 2, chunk])
    taxis = stop - first
    half = size.points_per_taxi // 2
    points = rng.integers(max(half, 1), size.points_per_taxi + half + 1, taxis)
    taxi = np.repeat(np.arange(taxis), points)
    n = len(taxi)
    head = np.zeros(n, dtype=bool)
    head[_starts(points)] = True

    step_s = np.where(head, 0.0, rng.uniform(30, 60, n))  # seconds since the previous fix
    begin = rng.uniform(0, WEEK_DAYS * 1440 - 8 * 60, taxis)  # shift start, minutes
    minutes = np.repeat(begin, points) + _cumsum_within(step_s, points) / 60.0
    hour = (minutes // 60 % 24).astype("int64")

    segment = np.cumsum(head | (rng.random(n) < 1.0 / TAXI_SEGMENT_POINTS)) - 1
    segments = int(segment[-1]) + 1 if n else 0
    occupied = rng.random(segments) < 0.55
    waiting = ~occupied & (rng.random(segments) < 0.4)
    cruise = rng.lognormal(np.log(32.0), 0.35, segments)
    moving = ~waiting[segment] & (rng.random(n) > 0.08)  # red lights, drop-offs
    speed = cruise[segment] * CONGESTION[hour] * rng.uniform(0.7, 1.3, n)
    speed = np.where(moving, np.clip(speed, 0.0, MAX_SPEED), 0.0)

    heading = np.repeat(rng.uniform(0, 2 * np.pi, taxis), points) + _cumsum_within(
        rng.normal(0, 0.35, n), points
    )
    km = speed * step_s / 3600.0
    lon0 = rng.normal(CENTRE[0], 0.12, taxis)
    lat0 = rng.normal(CENTRE[1], 0.10, taxis)
    lon = np.repeat(lon0, points) + _cumsum_within(km * np.cos(heading) / KM_PER_DEG_LON, points)
    lat = np.repeat(lat0, points) + _cumsum_within(km * np.sin(heading) / KM_PER_DEG_LAT, points)
    return pa.table(
        {
            "plate": pa.array(plates(first, stop), pa.string()).take(pa.array(taxi)),
            "ts": pa.array(_timestamps(minutes)),
            "lon": pa.array(_reflect(lon, *LON_RANGE)),
            "lat": pa.array(_reflect(lat, *LAT_RANGE)),
            "speed": pa.array(speed),
            "occupied": pa.array(occupied[segment].astype("int8")),
        },
        schema=DATASETS["taxi_gps"].schema,
    )


# --- bus events ------------------------------------------------------------------------------


def bus_chunk(size: Size, seed: int, chunk: int, first: int, stop: int) -> pa.Table:
    """Buses ``first..stop-1``: each runs one route back and forth for ``bus_days`` days.

    A service day starts 05:30-06:30 and has up to ``BUS_TRIPS_PER_DAY`` trips with a 5-15
    minute layover between them, none starting after 22:30; each stop is an 'arrive' then a
    'depart' 0.3-2 minutes later. Travel between stops takes longer in the rush hours. Rows are
    by bus and time.
    """
    rng = np.random.default_rng([seed, 3, chunk])
    net = bus_network()
    buses = stop - first
    route = rng.integers(0, BUS_ROUTES, buses)
    first_day = rng.integers(0, WEEK_DAYS - size.bus_days + 1, buses)
    service = buses * size.bus_days  # (bus, day) pairs
    day = np.repeat(first_day, size.bus_days) + np.tile(np.arange(size.bus_days), buses)
    trip_service = np.repeat(np.arange(service), BUS_TRIPS_PER_DAY)
    trip_route = np.repeat(route, size.bus_days * BUS_TRIPS_PER_DAY)
    inbound = np.tile(np.arange(BUS_TRIPS_PER_DAY) % 2 == 1, service)
    stops = net.lengths[trip_route]
    trips = len(trip_route)

    visit_trip = np.repeat(np.arange(trips), stops)
    ordinal = np.arange(len(visit_trip)) - np.repeat(_starts(stops), stops)
    position = np.where(inbound[visit_trip], stops[visit_trip] - 1 - ordinal, ordinal)
    station = net.stops[net.offsets[trip_route[visit_trip]] + position]
    travel = rng.uniform(1.5, 4.0, len(visit_trip))
    dwell = rng.uniform(0.3, 2.0, len(visit_trip))
    layover = rng.uniform(5.0, 15.0, trips)
    day_start = day * 1440.0 + rng.uniform(5.5 * 60, 6.5 * 60, service)

    def schedule(travel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        busy = np.add.reduceat(travel + dwell, _starts(stops)) + layover
        per_day = np.full(service, BUS_TRIPS_PER_DAY)
        trip_start = day_start[trip_service] + _cumsum_within(busy, per_day) - busy
        arrive = trip_start[visit_trip] + _cumsum_within(travel + dwell, stops) - dwell
        return trip_start, arrive

    trip_start, _ = schedule(travel)  # first pass: when each trip runs, to know its traffic
    travel = travel * 0.8 / CONGESTION[(trip_start // 60 % 24).astype("int64")][visit_trip]
    trip_start, arrive = schedule(travel)
    last_departure = day * 1440 + LAST_BUS_MINUTE
    in_service = trip_start[visit_trip] <= last_departure[trip_service[visit_trip]]
    within = in_service & (arrive + dwell < WEEK_DAYS * 1440)  # and all inside the week
    visits = int(within.sum())
    minutes = np.empty(2 * visits)
    minutes[0::2], minutes[1::2] = arrive[within], (arrive + dwell)[within]
    bus_ids = first + np.arange(buses, dtype="int64") + 1000
    bus = bus_ids[trip_service[visit_trip] // size.bus_days]
    return pa.table(
        {
            "bus_id": pa.array(np.repeat(bus[within], 2)),
            "route": pa.array(np.repeat(trip_route[visit_trip][within] + 1, 2).astype("int32")),
            "station_id": pa.array(np.repeat(station[within], 2)),
            "ts": pa.array(_timestamps(minutes)),
            "event": _labels(["arrive", "depart"], np.tile(np.array([0, 1], "int8"), visits)),
        },
        schema=DATASETS["bus_events"].schema,
    )


class Manifest(TypedDict):
    """manifest.json: what was generated, and each dataset's registration metadata."""

    size: str
    seed: int
    datasets: list[dict[str, Any]]


# --- whole datasets --------------------------------------------------------------------------

Chunk = Callable[[Size, int, int, int, int], pa.Table]


@dataclass(frozen=True)
class Generator:
    make: Chunk
    units: Callable[[Size], int]
    chunk_units: Callable[[Size], int]


GENERATORS: dict[str, Generator] = {
    "transport_cards": Generator(cards_chunk, lambda s: s.cards, lambda s: s.card_chunk),
    "taxi_gps": Generator(taxi_chunk, lambda s: s.taxis, lambda s: s.taxi_chunk),
    "bus_events": Generator(bus_chunk, lambda s: s.buses, lambda s: s.bus_chunk),
}


def _generator(name: str) -> Generator:
    if name not in GENERATORS:
        raise ValueError(f"unknown dataset {name!r}; use one of: {', '.join(GENERATORS)}")
    return GENERATORS[name]


def chunks(name: str, size: Size | str, seed: int) -> Iterator[tuple[int, int, pa.Table]]:
    """(units done, units total, table) per chunk: the dataset in bounded-memory pieces."""
    size = resolve_size(size)
    gen = _generator(name)
    total, step = gen.units(size), gen.chunk_units(size)
    for index, first in enumerate(range(0, total, step)):
        stop = min(total, first + step)
        yield stop, total, gen.make(size, seed, index, first, stop)


def generate_table(name: str, size: Size | str, seed: int) -> pa.Table:
    """The whole dataset in memory: for tests and the small sizes."""
    return pa.concat_tables(table for _, _, table in chunks(name, size, seed))


def generate_frame(name: str, size: Size | str, seed: int) -> pd.DataFrame:
    """The whole dataset as a pandas frame (ts as datetime64[us])."""
    return generate_table(name, size, seed).to_pandas()


def write_dataset(
    name: str, size: Size | str, seed: int, path: Path, progress: Progress | None = None
) -> int:
    """Stream the dataset to Parquet chunk by chunk; returns the row count.

    Written to a temporary name and renamed at the end, so a file at ``path`` is complete.
    """
    partial = path.with_name(path.name + ".partial")
    rows = 0
    with pq.ParquetWriter(partial, DATASETS[name].schema) as writer:
        for done, total, table in chunks(name, size, seed):
            writer.write_table(table, row_group_size=1_000_000)
            rows += table.num_rows
            if progress is not None:
                progress(name, done, total)
    os.replace(partial, path)
    return rows


def write_all(
    out: Path,
    size: str,
    seed: int,
    only: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Write the chosen datasets (default: all three) and ``manifest.json``; return the manifest.

    The manifest is written last, so its presence means the files next to it are complete.
    """
    spec = resolve_size(size)
    chosen = list(only) if only else list(DATASETS)
    for name in chosen:
        _generator(name)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in (name for name in DATASETS if name in chosen):
        info = DATASETS[name]
        rows = write_dataset(name, spec, seed, out / info.file, progress)
        entries.append({**info.manifest_entry(), "rows": rows, "seed": seed, "size": size})
    manifest = Manifest(size=size, seed=seed, datasets=entries)
    (out / "manifest.json").write_text(manifest_json(manifest))
    return manifest


def manifest_json(manifest: Manifest) -> str:
    """Indented JSON with each list of scalars on one line: 500 station ids stay readable."""
    flat: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list) and not any(isinstance(v, dict | list) for v in value):
            flat.append(json.dumps(value))
            return f"\0{len(flat) - 1}\0"
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    text = json.dumps(mark(dict(manifest)), indent=2)
    for index, compact in enumerate(flat):
        text = text.replace(json.dumps(f"\0{index}\0"), compact, 1)
    return text + "\n"
