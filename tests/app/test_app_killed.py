"""The app process killed during *Run model* (issue 22): nothing is left half-written in the runs folder, the
output folders or the app's cache, and the app starts cleanly afterwards. (Killed during training:
``tests/trainer/test_bundle_publish.py``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core.config import REPO_ROOT
from tests.app.conftest import MAIN, goto

RUN_AND_HANG = textwrap.dedent("""
    import sys, time
    from streamlit.testing.v1 import AppTest
    from app import services

    real = services.classify

    def classify(*args, progress=None, **kwargs):
        def report(done, total):
            if progress is not None:
                progress(done, total)
            print(f"RUNNING {done}/{total}", flush=True)
            time.sleep(600)  # killed here, in the middle of the model run
        return real(*args, progress=report, **kwargs)

    services.classify = classify
    at = AppTest.from_file(sys.argv[1], default_timeout=900)
    at.run()
    at.selectbox(key="scene").set_value("dfc2020-roi0000-test-p0").run()
    at.radio(key="aoi_mode").set_value("Whole scene").run()
    at.button(key="run").click().run()
""")


@pytest.mark.slow
def test_the_app_killed_during_run_model_leaves_nothing_and_starts_again(tmp_path, monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path / "home"), "LULC_RUNS_DIR": str(tmp_path / "runs"),
           "LULC_CACHE_DIR": str(tmp_path / "cache"), "LULC_APP_RAISE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUN_AND_HANG, MAIN], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline, out = time.time() + 600, ""
        while "RUNNING" not in out and proc.poll() is None and time.time() < deadline:
            out += proc.stdout.readline()
        assert "RUNNING" in out, out[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if ".partial" in p.name], written
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*")), written  # Run model writes no run
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    for k, v in env.items():
        if k.startswith("LULC_"):
            monkeypatch.setenv(k, v)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(MAIN, default_timeout=300)  # the app started again
    at.run()
    assert not at.exception and not at.error
    for page in ("models", "train", "compare"):
        goto(at, page)
        assert not at.error, [e.value for e in at.error]
