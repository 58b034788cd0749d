"""End to end in headless Chromium: run the model on a small scene, open Correct, click points of two classes on the
map, press Retrain and see the map change (the map's overlay picture and the changed-pixel count).

Screenshots go to ``artifacts/`` (``e2e_correct_points.png``, ``e2e_correct_round.png``).
"""

from __future__ import annotations

import re

from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, pytestmark, server  # noqa: F401  (fixture and skip mark)


def _pick_class(page, name: str) -> None:
    field = page.locator("[data-testid='stSelectbox'] input[aria-label='Class to label']").first
    field.click()
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    page.wait_for_function("(n) => document.querySelector(\"input[aria-label='Class to label']\").value === n", arg=name, timeout=60_000)
    page.wait_for_timeout(1500)  # the rerun that takes the new class


def _overlay_src(frame) -> str:
    return frame.locator("img.leaflet-image-layer").nth(1).get_attribute("src") or ""


def test_click_points_retrain_and_the_map_changes(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                                                    "--disable-background-networking", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(120_000)  # a loaded machine draws slowly
        page.goto(f"{server}/?scene=slovenia-2015-08-20&aoi=whole&model=models/default", timeout=180_000, wait_until="domcontentloaded")
        page.get_by_role("button", name="Run model").wait_for(timeout=90_000)
        page.get_by_role("button", name="Run model").click()
        page.get_by_text("Predicted").first.wait_for(timeout=180_000)

        page.get_by_role("link", name="Correct").first.click()
        page.get_by_text("Feature cache").first.wait_for(timeout=180_000)
        frame = page.frame_locator("iframe[title='streamlit_folium.st_folium']").first
        container = frame.locator(".leaflet-container")
        container.wait_for(timeout=60_000)
        frame.locator("img.leaflet-image-layer").nth(1).wait_for(timeout=60_000)  # imagery, then the model's map
        before = _overlay_src(frame)
        box = container.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        clicks = [("water", (-80, -60)), ("water", (70, -50)), ("built", (-60, 70)), ("built", (80, 60))]
        for n, (cls, (dx, dy)) in enumerate(clicks, start=1):
            if n in (1, 3):
                _pick_class(page, cls)
            page.mouse.click(cx + dx, cy + dy)
            page.get_by_text(f"{n} point(s), 0 polygon(s)").wait_for(timeout=120_000)
            frame.locator("path.correct-point").nth(n - 1).wait_for(timeout=60_000)  # the n-th marker is drawn
            page.wait_for_timeout(1000)  # the redrawn map takes clicks again
            box = container.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.screenshot(path=str(ARTIFACTS / "e2e_correct_points.png"), full_page=True)

        page.get_by_role("button", name="Retrain").click()
        page.get_by_text("Base model → Round 1").wait_for(timeout=180_000)
        changed = page.get_by_text(re.compile(r"of the AOI's pixels changed class \(([\d,]+) px\)")).first.inner_text()
        assert int(re.search(r"\(([\d,]+) px\)", changed).group(1).replace(",", "")) > 0, changed
        page.wait_for_function(
            """(old) => { const f = document.querySelector("iframe[title='streamlit_folium.st_folium']");
                          const imgs = f && f.contentDocument ? f.contentDocument.querySelectorAll('img.leaflet-image-layer') : [];
                          return imgs.length > 1 && imgs[1].getAttribute('src') !== old; }""",
            arg=before, timeout=120_000)
        assert _overlay_src(frame) != before  # the map on the map is the new round's
        page.locator("[data-testid='stImage'] img").nth(2).wait_for(timeout=60_000)  # before, after, changed pixels
        page.locator("[data-testid='stImage']").first.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "e2e_correct_round.png"), full_page=True)
        browser.close()
