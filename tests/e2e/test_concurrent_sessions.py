"""Concurrent sessions on one server (the small variant of ``benchmarks/bench_load.py``).

Three browser sessions at once, each on its own sample scene and AOI, run the model and open Compare and Metrics
against one ``streamlit run``: every session finishes, never sees another session's scene, and no page shows an
error or exception element.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

from core.config import REPO_ROOT

spec = importlib.util.spec_from_file_location("bench_load", REPO_ROOT / "benchmarks" / "bench_load.py")
bench_load = importlib.util.module_from_spec(spec)
sys.modules["bench_load"] = bench_load  # dataclasses look their module up
spec.loader.exec_module(bench_load)

pytestmark = pytest.mark.skipif(not Path(bench_load.CHROMIUM).exists(), reason="Debian's chromium is not installed (make browser)")


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
