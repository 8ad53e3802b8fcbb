"""The organizers' charts, summary and paging as pure functions (no server, no browser):
which chart a job's cells get, that labels are cut to their room, that pages clamp and link."""

from __future__ import annotations

import re

from starlette.datastructures import URL

from api.schemas import ReleasedOut
from api.web.cells import as_cells, released_jobs, summarize
from api.web.charts import MAX_BARS, WIDTH, Bar, bar_chart, charts_for, fit, text_width
from api.web.paging import page_number, paginate


def cell(name: str, value: float, **keys: object) -> ReleasedOut:
    return ReleasedOut(name=name, keys=keys or None, value=value, noise_scale=2.0,
                       error_bound_95=6.0, epsilon=0.5)  # fmt: skip


def grid(
    names: tuple[str, ...] = ("trips",), lines: int = 20, hours: int = 24
) -> list[ReleasedOut]:
    return [cell(n, float(line * hour), line=line, hour=hour)
            for line in range(1, lines + 1) for hour in range(hours) for n in names]  # fmt: skip


def test_two_keys_make_one_heat_map_per_output_with_every_cell() -> None:
    charts = charts_for(grid(("trips", "fares", "mean_fare")), "awaiting review")
    assert len(charts) == 3
    assert all(c.count("<rect") == 480 + 10 for c in charts)  # the cells, then the legend
    assert "trips, awaiting review" in charts[0]
    assert "line=3, hour=7: 21 ± 6" in charts[0]  # each cell's tooltip


def test_one_key_makes_bars_capped_and_said_so_three_keys_none() -> None:
    bars = charts_for([cell("trips", float(i), station=i) for i in range(500)])
    assert len(bars) == 1 and bars[0].count("<rect") == MAX_BARS
    assert f"the first {MAX_BARS} of 500" in bars[0]
    assert charts_for([cell("n", 1.0, a=1, b=2, c=3)]) == []
    (aggregate,) = charts_for([cell("n", 3.0), cell("mean", 2.0)], "released")
    assert "released outputs" in aggregate


def test_a_long_label_is_cut_with_an_ellipsis_and_kept_whole_as_its_tooltip() -> None:
    name = "Mean fare over every card of the week, weekends included, in euros" * 2
    (chart,) = charts_for([cell(name, 3.0), cell("n", 2.0)])
    shown = re.findall(r"<text[^>]*><title>([^<]*)</title>([^<]*)</text>", chart)
    assert (name, fit(name, 140, 12)) in shown
    assert fit(name, 140, 12).endswith("…") and text_width(fit(name, 140, 12), 12) <= 140
    assert fit("n", 140, 12) == "n"


def test_the_summary_gives_each_output_its_range_total_and_noise() -> None:
    summary = summarize(grid(("trips", "fares")))
    assert summary.cells == 960 and summary.keys == {"line": 20, "hour": 24}
    trips = summary.outputs[0]
    assert (trips.name, trips.cells, trips.low, trips.high) == ("trips", 480, 0.0, 460.0)
    assert trips.total == sum(line * hour for line in range(1, 21) for hour in range(24))
    assert trips.noise_scale == (2.0, 2.0) and summary.epsilon == 1.0


def test_pages_clamp_and_link_a_window_keeping_other_parameters() -> None:
    rows = list(range(1440))
    last = paginate(rows, 99)
    assert (last.page, last.pages, last.first, last.last) == (29, 29, 1401, 1440)
    assert paginate(rows, -3).items == list(range(50))
    links = paginate(rows, 7).links(URL("http://x/ui/results?job=abc&page=7"), "values")
    labels = [link.label for link in links]
    assert labels == ["previous", "1", "…", "5", "6", "7", "8", "9", "…", "29", "next"]
    current = next(link for link in links if link.current)
    assert current.label == "7" and current.href is None
    assert links[-1].href == "http://x/ui/results?job=abc&page=8#values"
    assert paginate(rows[:50], 1).links(URL("http://x/"), "") == []


def test_a_page_number_typed_by_hand_never_fails() -> None:
    assert [page_number(raw) for raw in ("3", " 2", "-1", "abc", "", "1e3")] == [3, 2, -1, 1, 1, 1]


def test_a_value_label_sits_inside_the_chart_whatever_the_sign_and_noise() -> None:
    """A negative value with a bound wider than itself once put its label past the edge."""
    bars = [Bar("a", -5e4, 6e5), Bar("c", 0.375, 6.0)]
    drawn = bar_chart("t", bars)
    xs = [float(x) for x in re.findall(r'<text x="([-0-9.]+)" y="[0-9.]+" font-size="11"', drawn)]
    assert len(xs) == 2
    assert all(x + text_width(f"{b.value:g}", 11) <= WIDTH for x, b in zip(xs, bars, strict=True))
    assert fit("12345", 3, 11) == ""


def test_results_rows_group_into_one_line_per_job_and_back_into_cells() -> None:
    rows = [
        {"team": "t", "dataset": "d", "job": job, "mode": "query", "output": name,
         "keys": {"line": line}, "value": 1.0, "noise_scale": 2.0, "error_bound_95": 6.0,
         "epsilon": 0.5}
        for job, names in (("j1", ("trips", "fares")), ("j2", ("n",)))
        for name in names for line in (1, 2)
    ]  # fmt: skip
    lines = released_jobs(rows)
    assert [(j["job"], list(j["outputs"]), j["cells"]) for j in lines] == [
        ("j1", ["trips", "fares"], 4), ("j2", ["n"], 2)]  # fmt: skip
    cells = as_cells(rows)
    assert cells[0] == cell("trips", 1.0, line=1) and summarize(cells).cells == 6
