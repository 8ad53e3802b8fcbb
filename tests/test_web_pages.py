# ruff: noqa: F401, F811, RUF001, RUF003  (fixtures imported by name; the pages use × and –)
"""The organizers' pages for big and awkward jobs, in a real headless Chromium against the real
server (real Docker runs the jobs): a 1,440-cell query reads as a summary, heat maps and a paged
table of bounded height; chart labels stay inside their charts; values under review are titled
as pending; the report reads as lists; a missing job is an HTML 404; release and reject need a
ticked confirmation; and every page holds at a phone's 390 px without scrolling sideways.
Screenshots go to $UNSEEN_SCREENSHOTS (default var/screenshots), at 1280 and 390 px."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from api.schemas import ReleasedOut
from api.web.charts import charts_for
from client.api import UnseenClient
from client.plans import Query, col, hour
from tests.conftest import Deployment
from tests.test_web import SHOTS, awaiting_review, browser, logged_in, site

pytestmark = pytest.mark.docker

LONG_COUNT = "trips_through_the_gates_per_line_and_hour_of_the_day_over_the_whole_week"
LONG_HOUR = "hour_of_the_day_at_the_gate"
#: line (20) × hour (24) × three aggregates: 1,440 cells.
MANY = (
    Query()
    .group_by("line", **{LONG_HOUR: hour(col("ts"))})
    .count(LONG_COUNT)
    .sum("fares", "fare", lo=0, hi=15)
    .mean("mean_fare", "fare", lo=0, hi=15)
    .bound(rows_per_unit=3, groups_per_unit=2)
    .to_dict()
)
#: 63 characters: the API allows 64.
LONG_OUTPUT = "number_of_gate_events_in_this_block_counted_on_the_full_data_wk"
LONG_CODE = f"def analyze(df):\n    return {{'{LONG_OUTPUT}': float(len(df)), 'n': 1.0}}\n"
#: Desktop pages of a 1,440-cell job stay below this height (the table alone was 49,000 px).
MAX_HEIGHT = 6_000
PHONE = {"width": 390, "height": 844}

#: Every text of every chart: does its box lie inside its SVG's box? (the text, inside)
LABELS_INSIDE = """() => [...document.querySelectorAll('svg.chart')].flatMap(svg => {
  const box = svg.getBoundingClientRect();
  return [...svg.querySelectorAll('text')].map(t => {
    const r = t.getBoundingClientRect();
    const shown = [...t.childNodes].filter(n => n.nodeType === 3).map(n => n.data).join('');
    return [shown, r.left >= box.left - 0.5 && r.right <= box.right + 0.5
                   && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5];
  });
})"""


@pytest.fixture(scope="module")
def team(site: Deployment) -> UnseenClient:
    return site.new_contestant("team-web-many", "mona")


def run_query(client: UnseenClient) -> str:
    job = client.query("transport_cards", MANY, 1.0)
    assert client.wait(job["id"], timeout=300)["state"] == "awaiting_review"
    return str(job["id"])


@pytest.fixture(scope="module")
def many_cells(team: UnseenClient) -> str:
    """A 1,440-cell query job, left awaiting review."""
    return run_query(team)


@pytest.fixture(scope="module")
def released_many(site: Deployment, team: UnseenClient) -> str:
    """The same query again, released through the API."""
    job = run_query(team)
    assert site.organizer.release(job)["state"] == "released"
    return job


@pytest.fixture(scope="module")
def long_names(site: Deployment, team: UnseenClient) -> str:
    """An aggregate job (code in the sandbox) whose output's name is 63 characters long."""
    outputs = [{"name": LONG_OUTPUT, "lo": 0, "hi": 100_000}, {"name": "n", "lo": 0, "hi": 1}]
    job = team.submit("cards_tiny", LONG_CODE, outputs, 0.5)
    assert team.wait(job["id"], timeout=300)["state"] == "awaiting_review"
    return str(job["id"])


@pytest.fixture()
def page(browser: Browser, site: Deployment) -> Iterator[Page]:
    opened = logged_in(browser, site)
    yield opened
    opened.close()


def height(page: Page) -> int:
    return int(page.evaluate("document.body.scrollHeight"))


def labels_inside(page: Page) -> list[list[Any]]:
    found: list[list[Any]] = page.evaluate(LABELS_INSIDE)
    assert found, "no chart labels on the page"
    return found


def test_a_many_cell_job_reads_as_summary_heat_maps_and_a_paged_table(
    page: Page, site: Deployment, many_cells: str
) -> None:
    page.goto(f"{site.server.url}/ui/jobs/{many_cells}")
    expect(page.locator("#plan")).to_contain_text(LONG_HOUR)
    summary = page.locator("#summary")
    expect(summary).to_contain_text("1440")
    expect(summary).to_contain_text(f"line (20 values) × {LONG_HOUR} (24 values)")
    outputs = page.locator("#summary-outputs")
    for name in (LONG_COUNT, "fares", "mean_fare"):
        expect(outputs).to_contain_text(name)
    expect(page.locator("svg.chart")).to_have_count(3)  # a heat map per output
    assert page.locator("svg.chart").first.locator("rect").count() >= 480
    expect(page.locator("#values tr")).to_have_count(51)  # header and the first 50 cells
    expect(page.locator("#values-table")).to_contain_text("1–50 of 1440")
    assert height(page) < MAX_HEIGHT, height(page)
    page.screenshot(path=SHOTS / "job-many-cells.png", full_page=True)

    page.locator(".pager").first.get_by_role("link", name="2", exact=True).click()
    expect(page.locator("#values-table")).to_contain_text("51–100 of 1440")
    assert "page=2" in page.url
    page.locator(".pager").first.get_by_role("link", name="29").click()
    expect(page.locator("#values-table")).to_contain_text("1401–1440 of 1440")
    expect(page.locator("#values tr")).to_have_count(41)
    assert height(page) < MAX_HEIGHT
    response = page.goto(f"{site.server.url}/ui/jobs/{many_cells}?page=last")  # edited by hand
    assert response is not None and response.status == 200
    expect(page.locator("#values-table")).to_contain_text("1–50 of 1440")


def test_values_under_review_are_titled_pending_and_released_ones_released(
    page: Page, site: Deployment, many_cells: str, released_many: str
) -> None:
    page.goto(f"{site.server.url}/ui/jobs/{many_cells}")
    expect(page.locator("#values-heading")).to_have_text(
        "Values awaiting review (noised; not released)"
    )
    titles = page.locator("svg.chart > title").all_text_contents()
    assert titles and all("awaiting review" in t and "released" not in t for t in titles)
    page.goto(f"{site.server.url}/ui/jobs/{released_many}")
    expect(page.locator("#values-heading")).to_have_text("Released values (noised)")
    assert all("released" in t for t in page.locator("svg.chart > title").all_text_contents())


def test_the_results_page_summarizes_draws_and_pages_a_released_job(
    page: Page, site: Deployment, released_many: str
) -> None:
    page.goto(f"{site.server.url}/ui/results")
    row = page.locator("#released-jobs tr", has_text=released_many[:12])
    expect(row).to_contain_text("1440")
    expect(page.locator("#results tr")).to_have_count(51)
    assert height(page) < MAX_HEIGHT
    row.get_by_role("link").click()
    expect(page.locator("#summary")).to_contain_text("1440")
    expect(page.locator("svg.chart")).to_have_count(3)
    expect(page.locator("#values-table")).to_contain_text("1–50 of 1440")
    assert height(page) < MAX_HEIGHT, height(page)
    page.screenshot(path=SHOTS / "results-many-cells.png", full_page=True)
    page.locator(".pager").first.get_by_role("link", name="next").click()
    expect(page.locator("#values-table")).to_contain_text("51–100 of 1440")
    assert f"job={released_many}" in page.url  # the filter kept across pages
    expect(page.locator("#results tr").first).not_to_contain_text("team")  # one job: said above
    expect(page.locator("#results tr")).to_have_count(51)


@pytest.mark.parametrize("width", [1280, 390])
def test_chart_labels_never_run_outside_their_chart(
    browser: Browser,
    site: Deployment,
    many_cells: str,
    long_names: str,
    width: int,
) -> None:
    page = logged_in(browser, site)
    page.set_viewport_size({"width": width, "height": 900})
    for job, shot in ((many_cells, "heat-map"), (long_names, "long-names")):
        page.goto(f"{site.server.url}/ui/jobs/{job}")
        outside = [text for text, inside in labels_inside(page) if not inside]
        assert outside == [], f"labels clipped on {shot}: {outside}"
        page.screenshot(path=SHOTS / f"labels-{shot}-{width}.png", full_page=True)
    # The long name is cut, with the whole of it as a tooltip.
    tip = page.locator("svg.chart text > title", has_text=LONG_OUTPUT)
    expect(tip).to_have_count(1)
    page.close()


def test_awkward_labels_drawn_in_chromium_stay_inside(browser: Browser) -> None:
    """Labels the real jobs above do not have: long key values on both axes, wide letters,
    huge and negative values."""
    station = "Gare de l'Est — Magenta / Boulevard de Strasbourg, sortie 3 (WWWWWWW)"
    cells = [
        ReleasedOut(name=name, keys=keys, value=value, noise_scale=1e5, error_bound_95=3e5,
                    epsilon=0.1)
        for name, keys, value in [
            *((f"MMMMMMMMMM{'W' * 60}", {"station": f"{station} {i}"}, -1.234567e6 * i)
              for i in range(5)),
            *(("visits", {"station": f"{station} {i}", "period": f"weekday evening {j} " * 3},
               float(i * j)) for i in range(4) for j in range(30)),
        ]
    ]  # fmt: skip
    charts = charts_for(cells[:5]) + charts_for(cells[5:])
    assert len(charts) == 2
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_content("<!doctype html><body>" + "".join(charts) + "</body>")
    outside = [text for text, inside in labels_inside(page) if not inside]
    assert outside == []
    page.screenshot(path=SHOTS / "labels-awkward.png", full_page=True)
    page.close()


def test_the_report_reads_as_lists_not_json(page: Page, site: Deployment, long_names: str) -> None:
    page.goto(f"{site.server.url}/ui/jobs/{long_names}")
    report = page.locator("#report")
    expect(report.locator("dl.facts").first).to_be_visible()
    expect(report.locator("dt", has_text="blocks defaulted")).to_have_count(1)
    expect(report.locator("dt", has_text="sandboxes")).to_have_count(1)
    text = report.inner_text()
    assert "{" not in text and '":' not in text
    page.screenshot(path=SHOTS / "job-report.png", full_page=True)


def test_a_missing_job_or_dataset_is_an_html_404_with_a_way_back(
    page: Page, site: Deployment
) -> None:
    response = page.goto(f"{site.server.url}/ui/jobs/no-such-job")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("No job 'no-such-job'")
    page.screenshot(path=SHOTS / "job-404.png", full_page=True)
    page.locator("#back").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    response = page.goto(f"{site.server.url}/ui/datasets/no_such_data")
    assert response is not None and response.status == 404
    page.locator("#back").click()
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    response = page.goto(f"{site.server.url}/ui/no/such/page")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("alert")).to_contain_text("No page /ui/no/such/page")
    page.locator("#back").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()


def post_unconfirmed(page: Page, site: Deployment, job: str, action: str) -> httpx.Response:
    """The form posted by hand, as a browser without the checkbox's check would: valid
    session and form token, no confirmation."""
    cookie = next(c for c in page.context.cookies() if c["name"] == "unseen_session")
    csrf = page.locator("#decide input[name=csrf]").first.get_attribute("value")
    return httpx.post(
        f"{site.server.url}/ui/jobs/{job}/{action}",
        data={"csrf": csrf, "reason": "not confirmed"},
        cookies={"unseen_session": cookie["value"]},
        follow_redirects=False,
    )


@pytest.mark.parametrize("action", ["release", "reject"])
def test_release_and_reject_do_nothing_until_confirmed(
    page: Page, site: Deployment, action: str
) -> None:
    """Release at desktop width, reject on a phone: the forms work at both."""
    job = awaiting_review(site, f"team-web-{action}-confirm", f"{action}-carl", query=True)
    if action == "reject":
        page.set_viewport_size(PHONE)
    page.goto(f"{site.server.url}/ui/jobs/{job}")
    if action == "reject":
        page.get_by_placeholder("reason the team will see").fill("cells too fine")
    page.locator(f"#{action}").click()  # box unticked: the browser does not send the form
    assert page.locator(f"#{action}-confirm").evaluate("box => box.validity.valueMissing")
    page.wait_for_timeout(500)
    expect(page.locator("#job-state")).to_have_text("awaiting_review")
    expect(page.get_by_role("status")).to_have_count(0)
    assert site.organizer.job(job)["state"] == "awaiting_review"

    refused = post_unconfirmed(page, site, job, action)  # and the server checks it too
    assert refused.status_code == 303 and "tick%20the%20box" in refused.headers["location"]
    assert site.organizer.job(job)["state"] == "awaiting_review"
    page.screenshot(path=SHOTS / f"job-{action}-unconfirmed.png", full_page=True)

    page.locator(f"#{action}-confirm").check()
    page.locator(f"#{action}").click()
    done = "released" if action == "release" else "rejected"
    expect(page.locator("#job-state")).to_have_text(done)
    assert site.organizer.job(job)["state"] == done
    page.screenshot(path=SHOTS / f"job-{action}-confirmed.png", full_page=True)


def test_every_organizer_page_holds_at_phone_width(
    browser: Browser,
    site: Deployment,
    many_cells: str,
    released_many: str,
    long_names: str,
) -> None:
    """No page scrolls sideways at 390 px: wide tables scroll inside their own box."""
    paths = {
        "login": "/ui/login",
        "review": "/ui/review",
        "job-many": f"/ui/jobs/{many_cells}",
        "job-released": f"/ui/jobs/{released_many}",
        "job-long-names": f"/ui/jobs/{long_names}",
        "job-404": "/ui/jobs/no-such-job",
        "teams": "/ui/teams",
        "datasets": "/ui/datasets",
        "dataset": "/ui/datasets/cards_tiny",
        "budgets": "/ui/budgets",
        "results": "/ui/results",
        "results-job": f"/ui/results?job={released_many}",
        "audit": "/ui/audit",
    }
    page = logged_in(browser, site)
    page.set_viewport_size(PHONE)
    for name, path in paths.items():
        page.goto(site.server.url + path)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= PHONE["width"], f"{name} is {wide} px wide at 390"
        unboxed = page.evaluate("""() => [...document.querySelectorAll('table')]
            .filter(t => t.getBoundingClientRect().width > 390 && !t.closest('.scroll'))
            .map(t => t.id || t.className)""")
        assert unboxed == [], f"{name}: tables wider than the phone outside a scroll box"
        page.screenshot(path=SHOTS / f"phone-{name}.png", full_page=True)
    page.goto(f"{site.server.url}/ui/jobs/{many_cells}")
    assert height(page) < 2 * MAX_HEIGHT
    boxed = page.locator("#values").evaluate("t => t.closest('.scroll').scrollWidth > 390")
    assert boxed  # the table is wider than the phone: it scrolls in its box
    page.close()
