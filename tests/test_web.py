"""The organizers' pages in a real headless Chromium (Debian's, driven by Playwright): log in,
release one output, reject another, see the state change, handle a licence, read the audit log.
Screenshots of each page go to $UNSEEN_SCREENSHOTS (default var/screenshots)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from client.api import UnseenClient, UnseenError
from client.plans import Query
from tests.conftest import (
    LICENCE_PDF,
    ROOT,
    Deployment,
    SodaData,
    postgres_database,
    start_deployment,
)

pytestmark = pytest.mark.docker
PASSWORD = "review-desk at 7am"
QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]
SHOTS = Path(os.environ.get("UNSEEN_SCREENSHOTS", ROOT / "var" / "screenshots"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed; run scripts/system-setup (apt install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(deployment: Deployment) -> Deployment:
    """The suite's server, with a password for its organizer. Each module that imports this
    fixture runs it again on the same server, where the organizer already has the password:
    changing it then needs the current one."""
    try:
        deployment.organizer.set_password(PASSWORD)
    except UnseenError as exc:
        if exc.code != "wrong_password":
            raise
        deployment.organizer.set_password(PASSWORD, current=PASSWORD)
    SHOTS.mkdir(parents=True, exist_ok=True)
    return deployment


def logged_in(browser: Browser, d: Deployment, name: str = "olga") -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{d.server.url}/ui/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    return page


def decide(page: Page, action: str) -> None:
    """Tick the confirmation box of the release or reject form, then send it."""
    page.locator(f"#{action}-confirm").check()
    page.locator(f"#{action}").click()


def awaiting_review(d: Deployment, team: str, user: str, query: bool = False) -> str:
    client = d.new_contestant(team, user)
    if query:
        plan = Query().group_by("line").count("trips").bound(2, 1).to_dict()
        job = client.query("cards_tiny", plan, 0.5)
    else:
        job = client.submit("cards_tiny", QUICK, OUTPUTS, 0.5)
    assert client.wait(job["id"], timeout=300)["state"] == "awaiting_review"
    return str(job["id"])


def test_an_organizer_releases_one_output_and_rejects_another(
    browser: Browser, site: Deployment
) -> None:
    d = site
    to_release = awaiting_review(d, "team-web-a", "wanda", query=True)
    to_reject = awaiting_review(d, "team-web-b", "wes")
    page = logged_in(browser, d)
    pending = page.locator("#pending")
    expect(pending).to_contain_text(to_release[:12])
    expect(pending).to_contain_text(to_reject[:12])
    page.screenshot(path=SHOTS / "review-queue.png", full_page=True)

    page.get_by_role("link", name=to_release[:12]).first.click()
    expect(page.locator("#job-state")).to_have_text("awaiting_review")
    expect(page.locator("svg.chart").first).to_be_visible()  # the count per line, drawn
    expect(page.locator("#logs")).to_be_visible()
    expect(page.locator("#review-rule")).to_contain_text("team sees a rejection")
    page.screenshot(path=SHOTS / "job-before-release.png", full_page=True)
    decide(page, "release")
    expect(page.locator("#job-state")).to_have_text("released")
    expect(page.get_by_role("status")).to_contain_text("released")
    page.screenshot(path=SHOTS / "job-released.png", full_page=True)

    page.goto(f"{d.server.url}/ui/jobs/{to_reject}")
    page.get_by_placeholder("reason the team will see").fill("outputs too fine for round two")
    decide(page, "reject")
    expect(page.locator("#job-state")).to_have_text("rejected")
    expect(page.get_by_role("status")).to_contain_text("budget stays spent")
    page.screenshot(path=SHOTS / "job-rejected.png", full_page=True)

    assert d.organizer.job(to_release)["state"] == "released"
    rejected = d.organizer.job(to_reject)
    assert rejected["state"] == "rejected"
    assert rejected["review_reason"] == "outputs too fine for round two"
    page.goto(f"{d.server.url}/ui/review")
    expect(page.locator("body")).not_to_contain_text(to_reject[:12] + "</a></td><td>team")
    page.close()


def test_licence_identity_and_admission_from_the_teams_page(
    browser: Browser, site: Deployment
) -> None:
    d = site
    team = d.organizer.create_team("team-web-c")
    member = d.organizer.with_token(d.organizer.add_member(team["id"], "xena")["token"])
    member.upload_licence("team-web-c", LICENCE_PDF, "licence.pdf")
    page = logged_in(browser, d)
    page.goto(f"{d.server.url}/ui/teams")
    row = page.locator("#team-team-web-c")
    expect(row).to_contain_text("pending")
    page.screenshot(path=SHOTS / "teams.png", full_page=True)
    row.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("licence approved")
    page.locator("#team-team-web-c").get_by_role("button", name="Mark identity verified").click()
    page.locator("#team-team-web-c").get_by_role("button", name="Admit").click()
    expect(page.locator("#team-team-web-c")).to_contain_text("may run on the full data")
    status = next(t for t in d.organizer.teams_status() if t["name"] == "team-web-c")
    assert status["admitted"] and status["full_data_blocked_by"] == []
    page.close()


def test_budgets_and_the_audit_log_with_filters(browser: Browser, site: Deployment) -> None:
    d = site
    page = logged_in(browser, d)
    page.goto(f"{d.server.url}/ui/budgets")
    expect(page.locator("#budgets")).to_contain_text("team-alpha")
    page.screenshot(path=SHOTS / "budgets.png", full_page=True)
    page.goto(f"{d.server.url}/ui/results")
    # released by the test above (the values table is paged; the jobs' list is whole)
    expect(page.locator("#released-jobs")).to_contain_text("team-web-a")
    csv_link = page.locator("#csv").get_attribute("href")
    assert csv_link == "/v1/results?format=csv"
    page.screenshot(path=SHOTS / "results.png", full_page=True)
    page.goto(f"{d.server.url}/ui/audit")
    expect(page.locator("#chain")).to_contain_text("Hash chain intact")
    page.get_by_placeholder("action, e.g. budget.charged").fill("job.released")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#events tr")
    expect(rows.nth(1)).to_contain_text("job.released")
    assert all("job.released" in text for text in rows.all_inner_texts()[1:])
    page.screenshot(path=SHOTS / "audit.png", full_page=True)
    page.close()


def test_contestants_wrong_passwords_forged_forms_and_logout_are_refused(
    browser: Browser, site: Deployment
) -> None:
    d = site
    team = d.organizer.create_team("team-web-d")
    d.organizer.add_member(team["id"], "yuri", password=PASSWORD)
    page = browser.new_page()
    page.goto(f"{d.server.url}/ui/login")
    page.get_by_label("Name").fill("yuri")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("for organizers")
    page.get_by_label("Name").fill("olga")
    page.get_by_label("Password").fill("not it at all")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong name or password")
    page.close()

    job = awaiting_review(d, "team-web-e", "zoe")
    page = logged_in(browser, d)
    cookie = next(c for c in page.context.cookies() if c["name"] == "unseen_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    session = {"unseen_session": cookie["value"]}
    forged = httpx.post(f"{d.server.url}/ui/jobs/{job}/release", data={"csrf": "forged"},
                        cookies=session, follow_redirects=False)  # fmt: skip
    assert forged.status_code == 303 and "expired" in forged.headers["location"]
    assert d.organizer.job(job)["state"] == "awaiting_review"

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Organizers: log in")).to_be_visible()
    after = httpx.get(f"{d.server.url}/ui/review", cookies=session, follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/ui/login")
    page.close()


def test_the_pages_work_the_same_on_postgresql(
    browser: Browser, runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    with postgres_database() as url:
        env = {"UNSEEN_DATABASE_URL": url, "UNSEEN_NODE": "web-pg"}
        d = start_deployment(tmp_path / "state", soda, env)
        try:
            d.organizer.set_password(PASSWORD)
            job = awaiting_review(d, "team-web-pg", "pam", query=True)
            page = logged_in(browser, d)
            page.goto(f"{d.server.url}/ui/jobs/{job}")
            decide(page, "release")
            expect(page.locator("#job-state")).to_have_text("released")
            page.goto(f"{d.server.url}/ui/audit")
            expect(page.locator("#chain")).to_contain_text("Hash chain intact")
            page.screenshot(path=SHOTS / "audit-postgresql.png", full_page=True)
            page.close()
            assert d.organizer.job(job)["state"] == "released"
        finally:
            d.server.stop()


def test_two_reviewers_release_one_output(
    browser: Browser, runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    """Its own server: a second organizer makes two approvals the default for every release."""
    d = start_deployment(tmp_path / "state", soda, {})
    try:
        d.organizer.set_password(PASSWORD)
        bootstrap = UnseenClient(d.server.url, d.server.bootstrap_token)
        bootstrap.create_organizer("omar", password=PASSWORD)
        job = awaiting_review(d, "team-web-two", "tess")

        first = logged_in(browser, d)
        expect(first.locator("#pending")).to_contain_text("0 of 2")
        first.goto(f"{d.server.url}/ui/jobs/{job}")
        expect(first.locator("#approvals")).to_contain_text("0 of 2 needed")
        expect(first.locator("#release")).to_have_text("Approve the release")
        decide(first, "release")
        expect(first.get_by_role("status")).to_contain_text("1 more approval(s)")
        expect(first.locator("#job-state")).to_have_text("partially_reviewed")
        expect(first.locator("#approvals")).to_contain_text("1 of 2 needed (olga at")
        expect(first.locator("#approvals")).to_contain_text("one approval from another organizer")
        first.screenshot(path=SHOTS / "job-one-of-two.png", full_page=True)
        decide(first, "release")  # the same person again
        expect(first.get_by_role("alert")).to_contain_text("already approved")
        first.close()

        second = logged_in(browser, d, "omar")
        expect(second.locator("#pending")).to_contain_text("1 of 2 (olga)")
        second.goto(f"{d.server.url}/ui/jobs/{job}")
        expect(second.locator("#release")).to_have_text("Release to the team")
        decide(second, "release")
        expect(second.get_by_role("status")).to_contain_text("released")
        expect(second.locator("#job-state")).to_have_text("released")
        expect(second.locator("#approvals")).to_contain_text("2 of 2 needed (olga at")
        second.screenshot(path=SHOTS / "job-two-of-two.png", full_page=True)
        second.close()
        assert [e["actor"] for e in d.organizer.audit(job=job, action="job.released")] == ["omar"]
    finally:
        d.server.stop()
