"""Time from ``streamlit run app/main.py`` to a usable map on the Explore page.

Starts the app on 127.0.0.1 (a fresh server per repeat), opens it in Debian's headless Chromium
with Playwright as soon as the server answers, and stops the clock when the Explore page's map
shows the selected sample scene (the Leaflet image overlay inside the map's iframe) and the
*Run model* button is on the page. Also reports when the server first answered its health check,
and whether the model stack (torch, segmentation_models_pytorch) had been imported by then
(read from the app's own process through ``/proc/<pid>/maps``: shared libraries of torch).

    .venv/bin/python benchmarks/bench_app_start.py [--repeats 3] [--json out.json]

Target (issue 10): under 5 s on the 2-core development machine.
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


def torch_loaded(pid: int) -> bool:
    """Whether the process has torch's C library mapped (i.e. has imported torch)."""
    try:
        return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def one_start(browser, timeout_s: float) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.address", "127.0.0.1",
                             "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ})
    out: dict = {}
    try:
        while time.perf_counter() - t0 < timeout_s:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        out["server_s"] = time.perf_counter() - t0
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url, timeout=timeout_s * 1000)
        frame = page.frame_locator("iframe[title*='st_folium'], iframe[title*='folium']").first
        frame.locator(".leaflet-image-layer").first.wait_for(state="attached", timeout=timeout_s * 1000)
        page.get_by_role("button", name="Run model").wait_for(timeout=timeout_s * 1000)
        out["usable_map_s"] = time.perf_counter() - t0
        out["torch_imported_at_usable_map"] = torch_loaded(proc.pid)
        page.close()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    runs = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"])
        for i in range(args.repeats):
            r = one_start(browser, args.timeout)
            runs.append(r)
            print(f"start {i + 1}: server answered after {r['server_s']:.1f} s, usable map after {r['usable_map_s']:.1f} s "
                  f"(torch imported by then: {r['torch_imported_at_usable_map']})", flush=True)
        browser.close()
    best = min(r["usable_map_s"] for r in runs)
    med = sorted(r["usable_map_s"] for r in runs)[len(runs) // 2]
    print(f"streamlit run -> usable map: median {med:.1f} s, best {best:.1f} s over {len(runs)} start(s) (target < 5 s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median_s": med, "best_s": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
