"""Time from pressing "Run model" to the IoU charts being shown, for a 5 x 5 km AOI.

Starts ``streamlit run app/main.py`` on 127.0.0.1, drives it in Debian's headless Chromium with
Playwright, types a 5 x 5 km bounding box over the Brandenburg sample, presses Run model, opens the
Metrics page and waits for the plotly charts. Prints the seconds of each repeat (the first one
includes loading the model into the app's cache).

    .venv/bin/python benchmarks/bench_app.py [--repeats 3] [--json out.json]

Target (issue 3): under 10 s on the 2-core development machine with the default model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyproj import Geod  # noqa: E402

CENTRE = (12.60921, 52.48976)  # Brandenburg scene centre (lon, lat)


def bbox_5km(lon: float, lat: float, side_m: float = 5000.0) -> tuple[float, float, float, float]:
    """West, south, east, north of a square of ``side_m`` metres centred on (lon, lat) (WGS 84 geodesics)."""
    g = Geod(ellps="WGS84")
    east, _, _ = g.fwd(lon, lat, 90, side_m / 2)
    west, _, _ = g.fwd(lon, lat, 270, side_m / 2)
    _, north, _ = g.fwd(lon, lat, 0, side_m / 2)
    _, south, _ = g.fwd(lon, lat, 180, side_m / 2)
    return west, south, east, north


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.address", "127.0.0.1",
                             "--server.port", str(port), "--server.headless", "true"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        w, s_, e, n = bbox_5km(*CENTRE)
        times = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"])
            for _ in range(args.repeats):
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                page.goto(url)
                page.get_by_text("Bounding box").first.wait_for(timeout=120_000)
                page.get_by_text("Bounding box").first.click()
                box = page.get_by_label("West, south, east, north (degrees)")
                box.fill(f"{w:.6f}, {s_:.6f}, {e:.6f}, {n:.6f}")
                box.press("Enter")
                page.wait_for_timeout(1000)
                t0 = time.perf_counter()
                page.get_by_role("button", name="Run model").click()
                page.get_by_text("Predicted").first.wait_for(timeout=300_000)
                page.get_by_role("link", name="Metrics").first.click()
                page.locator(".js-plotly-plot").nth(2).wait_for(timeout=300_000)
                times.append(time.perf_counter() - t0)
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"AOI 5 x 5 km at {CENTRE} (bbox {w:.5f}, {s_:.5f}, {e:.5f}, {n:.5f})")
    for i, t in enumerate(times):
        print(f"run {i + 1}: {t:.2f} s from pressing Run model to the IoU charts")
    best = min(times)
    print(f"best {best:.2f} s, first {times[0]:.2f} s; target < 10 s: {'PASS' if max(times) < 10 else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": times, "bbox": [w, s_, e, n]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
