"""End to end: ``streamlit run`` on 127.0.0.1, driven by Debian's headless Chromium via Playwright.

A user draws a rectangle over Brandenburg on the map, runs the model, and sees the prediction and
the IoU chart. Screenshots are saved in ``artifacts/`` as test artifacts.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from core.config import REPO_ROOT

_spec = importlib.util.spec_from_file_location("bench_load", REPO_ROOT / "benchmarks" / "bench_load.py")
bench_load = importlib.util.module_from_spec(_spec)
sys.modules["bench_load"] = bench_load  # dataclasses look their module up
_spec.loader.exec_module(bench_load)

CHROMIUM = bench_load.CHROMIUM
ARTIFACTS = REPO_ROOT / "artifacts"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make browser)")


@pytest.fixture(scope="module")
def server():
    """``streamlit run app/main.py`` on a free port of 127.0.0.1 (the load benchmark's launcher), log in artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        proc, url = bench_load.start_server(ARTIFACTS / "streamlit.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_draw_aoi_run_model_and_see_prediction_and_iou_chart(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(server)
        page.get_by_text("LULC Explorer").first.wait_for(timeout=60_000)
        # the map renders offline: Leaflet comes from the app's static folder
        frame = page.frame_locator("iframe[title='streamlit_folium.st_folium']").first
        container = frame.locator(".leaflet-container")
        container.wait_for(timeout=60_000)
        frame.locator(".leaflet-draw-draw-rectangle").wait_for(timeout=30_000)
        # draw a rectangle in the middle of the scene footprint
        frame.locator(".leaflet-draw-draw-rectangle").click()
        box = container.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 60, cy - 40)
        page.mouse.down()
        page.mouse.move(cx, cy, steps=5)
        page.mouse.move(cx + 60, cy + 40, steps=5)
        page.mouse.up()
        page.screenshot(path=str(ARTIFACTS / "e2e_drawn.png"), full_page=True)
        page.get_by_text("AOI drawn (area and fit beside the map)").wait_for(timeout=60_000)
        page.get_by_role("button", name="Run model").click()
        page.get_by_text("Predicted").first.wait_for(timeout=180_000)
        # the prediction is drawn on the map as a second image overlay, above the scene's true colour
        frame.locator("img.leaflet-image-layer").nth(1).wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "e2e_explore.png"), full_page=True)

        page.get_by_role("link", name="Compare").first.click()
        page.get_by_text("Agreement (blue)").first.wait_for(timeout=120_000)
        page.locator("[data-testid='stImage'] img").nth(4).wait_for(timeout=120_000)  # imagery, prediction, reference, agreement, confidence
        page.screenshot(path=str(ARTIFACTS / "e2e_compare.png"), full_page=True)
        page.wait_for_function("() => location.search.includes('scene=')", timeout=30_000)  # the link follows the user

        page.get_by_role("link", name="Metrics").first.click()
        page.get_by_text("Per-class IoU").first.wait_for(timeout=120_000)
        page.locator(".js-plotly-plot").nth(2).wait_for(timeout=120_000)  # IoU, P/R/F1, confusion matrix
        assert "Per-class IoU" in page.locator(".js-plotly-plot").first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "e2e_metrics.png"), full_page=True)
        browser.close()
