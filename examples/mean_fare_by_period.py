"""Example aggregate-mode analysis: mean metro fare in the morning peak, evening peak, off-peak.

Develop it on the public sample (pandas only), then submit it: unseen runs analyze() on each
block of the full data in a sandbox, clips every value to the declared bounds, averages over
blocks and adds calibrated noise.

Declared outputs (name:lo:hi): mean_fare_morning_peak:2:10 mean_fare_evening_peak:2:10
mean_fare_offpeak:2:10
"""

import pandas as pd


def analyze(df: pd.DataFrame) -> dict[str, float]:
    exits = df[df["event"] == "out"]
    hour = exits["ts"].dt.hour
    periods = {
        "mean_fare_morning_peak": exits[hour.between(7, 8)],
        "mean_fare_evening_peak": exits[hour.between(17, 18)],
        "mean_fare_offpeak": exits[~hour.between(7, 8) & ~hour.between(17, 18)],
    }
    # An empty period returns nothing for that name: the declared default stands in.
    return {name: float(rows["fare"].mean()) for name, rows in periods.items() if len(rows)}


OUTPUTS = [
    {"name": "mean_fare_morning_peak", "lo": 2.0, "hi": 10.0, "default": 5.0},
    {"name": "mean_fare_evening_peak", "lo": 2.0, "hi": 10.0, "default": 5.0},
    {"name": "mean_fare_offpeak", "lo": 2.0, "hi": 10.0, "default": 5.0},
]
