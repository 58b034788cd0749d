"""End to end in headless Chromium: a shared link opens Hungary, the Accuracy & area page gives
estimates and the report download, the Change page draws the Sankey diagram and downloads the CSV.

Screenshots go to ``artifacts/``; with ``LULC_SCREENSHOTS=docs`` the two README screenshots are
written to ``docs/`` instead.
"""

from __future__ import annotations

import os

from core.config import REPO_ROOT
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, pytestmark, server  # noqa: F401  (fixture and skip mark)


def _shots():
    return REPO_ROOT / "docs" if os.environ.get("LULC_SCREENSHOTS") == "docs" else ARTIFACTS


def test_shared_link_accuracy_report_download_and_change_sankey(server, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    shots = _shots()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                                                    "--disable-background-networking", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(120_000)  # a loaded machine draws slowly
        page.goto(f"{server}/?scene=hungary-2020-08-12&aoi=whole&model=models/default&reference=dw", timeout=180_000, wait_until="domcontentloaded")
        page.get_by_role("button", name="Run model").wait_for(timeout=90_000)
        page.get_by_role("button", name="Run model").click()
        page.get_by_text("Predicted").first.wait_for(timeout=180_000)
        assert "scene=hungary-2020-08-12" in page.url and "aoi=whole" in page.url  # the address bar is a shareable link

        page.get_by_role("link", name="Accuracy & area").first.click()
        page.get_by_text("Estimates with 95 % confidence intervals").wait_for(timeout=180_000)
        page.locator(".js-plotly-plot").nth(1).wait_for(timeout=120_000)  # area chart with CIs, reliability diagram
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "accuracy.png"), full_page=True)
        page.get_by_role("button", name="Build HTML report").click()
        page.get_by_role("button", name="Download report (HTML)").wait_for(timeout=180_000)
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download report (HTML)").click()
        report = tmp_path / "report.html"
        dl.value.save_as(report)
        html = report.read_text()
        assert html.startswith("<!DOCTYPE html>") and "Area and accuracy estimates" in html and "Bundle SHA-256" in html

        page.get_by_role("link", name="Change").first.click()
        page.get_by_role("button", name="Compute change").click()
        page.locator(".js-plotly-plot .sankey").first.wait_for(timeout=240_000)
        page.get_by_text("Changed share").wait_for(timeout=60_000)
        page.get_by_text("hungary-2020-04-24 → hungary-2021-02-18").wait_for(timeout=60_000)  # one place on two dates
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "change.png"), full_page=True)
        with page.expect_download() as dl:
            page.get_by_role("button", name="Transitions (CSV)").click()
        csv = tmp_path / "transitions.csv"
        dl.value.save_as(csv)
        assert csv.read_text().splitlines()[0] == "from,to,km2,pct,changed"
        browser.close()
