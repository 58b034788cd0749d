"""End to end: ``streamlit run`` on 127.0.0.1, driven by Debian's headless Chromium via Playwright.

A user draws a rectangle over Brandenburg on the map, runs the model, and sees the prediction and
the IoU chart. Screenshots are saved in ``artifacts/`` as test artifacts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.config import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "artifacts"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make browser)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start; see artifacts/streamlit.log")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


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
