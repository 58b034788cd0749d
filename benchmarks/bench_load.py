"""Many users on one server: N concurrent browser sessions against one ``streamlit run``.

Each session (a Playwright browser context on one headless Chromium, so its own cookies and websocket) opens a
link to a different sample scene with a small AOI (``/?scene=<id>&bbox=<w,s,e,n>``), presses *Run model*, then
opens Compare and Metrics. Unless ``--cold``, one unmeasured session first warms the server (models loaded,
caches filled). The script reports, per N, p50/p95 of *Run model* (click to "Predicted ... of <scene>")
and of page switches (click to the page's first figure), each against N = 1, the server's peak RSS (the
``streamlit`` process and its children, sampled every 0.2 s), its growth per session, and the RSS some seconds
after the sessions closed. Every session checks that it only ever saw its own scene id, that it finished, and that
no page showed an error or exception element; a violation is an error, not a figure.

    .venv/bin/python benchmarks/bench_load.py --sessions 1 4 8 [--json] [--aoi-km 2]

``tests/e2e/test_concurrent_sessions.py`` runs the same driver with 3 sessions and asserts the isolation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@dataclass
class SessionResult:
    """What one browser session did and saw."""

    scene: str
    run_s: float | None = None
    switch_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log_path: Path, port: int | None = None, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``streamlit run app/main.py`` on 127.0.0.1 and wait for its health endpoint.

    Returns:
        (process, base URL).

    Raises:
        RuntimeError: The server did not answer within 90 s (see ``log_path``).
    """
    port = port or free_port()
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"streamlit did not start; see {log_path}")


def scene_links(n: int, aoi_km: float = 2.0) -> list[tuple[str, str]]:
    """``n`` (scene id, query string) pairs: different georeferenced sample scenes, a square AOI at each centre.

    The AOI is ``aoi_km`` on a side (degrees; 1 km = 1/111 degree of latitude, longitude scaled by cos(latitude)).
    """
    import math

    from core.sources.samples import list_scenes

    scenes = [s for s in list_scenes() if s.georeferenced and s.bounds_lonlat and "bigearthnet" not in s.id]
    if len(scenes) < n:
        raise SystemExit(f"{n} sessions need {n} georeferenced sample scenes; the pack has {len(scenes)}")
    out = []
    for s in scenes[:n]:
        w, so, e, no = s.bounds_lonlat
        cx, cy = (w + e) / 2, (so + no) / 2
        dy = aoi_km / 2 / 111.0
        dx = dy / max(math.cos(math.radians(cy)), 0.1)
        out.append((s.id, f"scene={s.id}&bbox={cx - dx:.5f},{cy - dy:.5f},{cx + dx:.5f},{cy + dy:.5f}"))
    return out


async def _visible_text(page) -> str:
    return await page.locator("[data-testid='stMain']").inner_text()


async def _check_page(page, res: SessionResult, others: list[str], where: str) -> None:
    text = await _visible_text(page)
    leaked = [o for o in others if o in text]
    if leaked:
        res.problems.append(f"{where}: shows another session's scene {', '.join(leaked)}")
    if res.scene not in text:
        res.problems.append(f"{where}: does not name its own scene {res.scene}")
    errors = await page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count()
    if errors:
        res.problems.append(f"{where}: {errors} error element(s): {text[:200]!r}")


async def _session(browser, url: str, scene: str, query: str, others: list[str], timeout_ms: int) -> SessionResult:
    res = SessionResult(scene)
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    try:
        await page.goto(f"{url}/?{query}")
        run = page.get_by_role("button", name="Run model")
        await run.wait_for(timeout=timeout_ms)
        await page.wait_for_function("() => { const b = [...document.querySelectorAll('button')].find("
                                     "x => x.innerText.includes('Run model')); return b && !b.disabled; }", timeout=timeout_ms)
        t0 = time.perf_counter()
        await run.click()
        await page.get_by_text(f"of {scene}. See Compare").first.wait_for(timeout=timeout_ms)
        res.run_s = time.perf_counter() - t0
        await _check_page(page, res, others, "Explore")
        for link, path, marker in (("Compare", "compare", "Agreement (blue)"), ("Metrics", "metrics", "Per-class IoU")):
            t0 = time.perf_counter()
            await page.get_by_role("link", name=link).first.click()
            await page.wait_for_url(f"**/{path}*", timeout=timeout_ms)
            await page.get_by_text(marker, exact=False).first.wait_for(timeout=timeout_ms)
            await page.get_by_text("Last run on Explore").first.wait_for(timeout=timeout_ms)
            res.switch_s.append(time.perf_counter() - t0)
            await page.wait_for_timeout(300)
            await _check_page(page, res, others, link)
    except Exception as exc:  # a timeout or a closed page is a finding of this session, reported with the others
        res.problems.append(f"did not finish: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    finally:
        await ctx.close()
    return res


async def run_sessions(url: str, links: list[tuple[str, str]], timeout_ms: int = 300_000) -> list[SessionResult]:
    """Drive one browser session per (scene, query) at the same time; returns their results in order."""
    from playwright.async_api import async_playwright

    ids = [s for s, _ in links]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return list(await asyncio.gather(*(
                _session(browser, url, s, q, [o for o in ids if o != s], timeout_ms) for s, q in links)))
        finally:
            await browser.close()


class RssSampler:
    """Peak resident memory (MiB) of a process and its children, sampled in a thread every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self.proc, self.interval, self.peak = psutil.Process(pid), interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def now(self) -> float:
        """Current RSS of the process tree, MiB."""
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--aoi-km", type=float, default=2.0, help="side of each session's square AOI (km)")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds to wait after the sessions closed before the last RSS")
    ap.add_argument("--cold", action="store_true", help="measure from a cold server (default: one unmeasured session first "
                    "loads the models, so N=1 and N=8 compare the same warm server)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian's chromium is not installed (make browser)")
    logs = ROOT / "artifacts"
    logs.mkdir(exist_ok=True)
    rows, failed = [], False
    for n in args.sessions:  # a fresh server per N, so each row starts from the same memory
        proc, url = start_server(logs / f"bench_load_{n}.log")
        try:
            if not args.cold:  # load the models and caches once, with a scene no measured session uses
                warm = asyncio.run(run_sessions(url, scene_links(n + 1, args.aoi_km)[-1:]))
                if warm[0].problems:
                    raise SystemExit(f"the warm-up session failed: {warm[0].problems}")
            with RssSampler(proc.pid) as rss:
                idle = rss.now()
                t0 = time.perf_counter()
                results = asyncio.run(run_sessions(url, scene_links(n, args.aoi_km)))
                wall = time.perf_counter() - t0
            time.sleep(args.settle)
            after = rss.now()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        problems = [f"{r.scene}: {p}" for r in results for p in r.problems]
        failed |= bool(problems)
        runs = [r.run_s for r in results if r.run_s is not None]
        switches = [s for r in results for s in r.switch_s]
        rows.append({"sessions": n, "finished": sum(not r.problems for r in results), "wall_s": round(wall, 1),
                     "run_p50_s": round(statistics.median(runs), 2) if runs else None,
                     "run_p95_s": round(_pct(runs, 0.95), 2) if runs else None,
                     "switch_p50_s": round(statistics.median(switches), 2) if switches else None,
                     "switch_p95_s": round(_pct(switches, 0.95), 2) if switches else None,
                     "rss_start_mib": round(idle), "rss_peak_mib": round(rss.peak),
                     "rss_per_session_mib": round((rss.peak - idle) / n), "rss_after_close_mib": round(after),
                     "problems": problems})
    base = rows[0]
    for r in rows:
        for k in ("run_p50_s", "switch_p50_s"):
            r[k.replace("_s", "_x1")] = round(r[k] / base[k], 2) if r[k] and base[k] else None
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("| sessions | finished | Run model p50 / p95 (s) | x N=1 | page switch p50 / p95 (s) | x N=1 | RSS at start / peak / after close (MiB) | per session (MiB) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['sessions']} | {r['finished']}/{r['sessions']} | {r['run_p50_s']} / {r['run_p95_s']} | {r['run_p50_x1']} | "
                  f"{r['switch_p50_s']} / {r['switch_p95_s']} | {r['switch_p50_x1']} | {r['rss_start_mib']} / {r['rss_peak_mib']} / "
                  f"{r['rss_after_close_mib']} | {r['rss_per_session_mib']} |")
        for r in rows:
            for p in r["problems"]:
                print(f"PROBLEM (N={r['sessions']}): {p}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
