"""The organizers' dataset page in a real headless Chromium: a synthetic sample's ε and its
fidelity report, side by side with a real-row sample and independent marginals."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Deployment, SodaData
from tests.test_web import SHOTS, browser, logged_in, site  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker


def test_the_dataset_page_shows_the_synthetic_sample_and_its_fidelity(
    browser: Browser,  # noqa: F811
    site: Deployment,  # noqa: F811
    soda: SodaData,
) -> None:
    body = soda.registration("transport_cards", 2, as_name="cards_web")
    body.pop("sample_path")
    body["synthesize"] = {"epsilon": 0.5, "rows": 3_000,
                          "time_bounds": {"ts": ["2026-03-02", "2026-03-09"]}}  # fmt: skip
    site.organizer.register_dataset(**body)
    page = logged_in(browser, site)
    page.get_by_role("link", name="Datasets").click()
    row = page.locator("#datasets tr", has_text="cards_web")
    expect(row).to_contain_text("synthetic, ε=0.5")
    row.get_by_role("link", name="cards_web").click()
    expect(page.get_by_role("heading", name="Dataset cards_web")).to_be_visible()
    report = page.locator("table.fidelity")
    expect(report).to_contain_text("real rows (same size)")
    expect(report.locator("tr", has_text="2-way")).to_be_visible()
    expect(page.get_by_text("for organizers only, never for teams")).to_be_visible()
    analysis = page.locator("table.analysis")  # the default: rows and mean fare by event
    expect(page.get_by_role("heading", name="The default analysis")).to_be_visible()
    expect(analysis.locator("tr", has_text="rows (count)")).to_contain_text("%")
    expect(analysis.locator("tr", has_text="mean_fare (mean)")).to_be_visible()
    page.screenshot(path=str(SHOTS / "dataset-fidelity.png"), full_page=True)
    page.close()
