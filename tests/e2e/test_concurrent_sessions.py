"""Concurrent sessions on one server (the small variant of ``benchmarks/bench_load.py``).

Three browser sessions at once, each on its own sample scene and AOI, run the model and open Compare and Metrics
against one ``streamlit run``: every session finishes, never sees another session's scene, and no page shows an
error or exception element.
"""

from __future__ import annotations

import asyncio

from tests.e2e.test_browser import bench_load, pytestmark  # noqa: F401  (the launcher and the skip mark)


def test_three_simultaneous_sessions_each_see_only_their_own_analysis(tmp_path):
    proc, url = bench_load.start_server(tmp_path / "streamlit.log")
    try:
        links = bench_load.scene_links(3, aoi_km=1.5)
        results = asyncio.run(bench_load.run_sessions(url, links, timeout_ms=400_000))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert [r.scene for r in results] == [s for s, _ in links]
    problems = [f"{r.scene}: {p}" for r in results for p in r.problems]
    assert not problems, "\n".join(problems) + "\n" + (tmp_path / "streamlit.log").read_text()[-2000:]
    assert all(r.run_s is not None and len(r.switch_s) == 2 for r in results)
