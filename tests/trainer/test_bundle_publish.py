"""The runs folder never receives a half-written bundle (issue 22): ``fit`` finishes a bundle outside it and
publishes it whole (:func:`trainer.fit.publish_bundle`); a trainer killed while the bundle is being made leaves no
bundle, and the app's Train and Models pages open cleanly afterwards."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.config import REPO_ROOT
from core.io.outputs import OutputError
from models.card import find_bundles
from trainer.fit import publish_bundle

SMOKE = REPO_ROOT / "tests" / "trainer" / "smoke.yaml"


def _bundle(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(tag.encode() * 1000)
    (folder / "card.json").write_text(json.dumps({"name": tag}))
    return folder


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_publish_replaces_the_previous_bundle_whole(tmp_path):
    staging = _bundle(tmp_path / "staging", "new")
    out = _bundle(tmp_path / "runs" / "app-1" / "bundle", "old")
    assert publish_bundle(staging, out) == out
    assert json.loads((out / "card.json").read_text())["name"] == "new" and (out / "model.safetensors").read_bytes().startswith(b"new")
    assert _hidden(out.parent) == [] and _hidden(out) == []
    assert (staging / "card.json").exists()  # the staging folder is the caller's
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # readable like any new folder, not mkdtemp's private 0o700


def test_a_full_disk_while_publishing_keeps_the_previous_bundle_and_leaves_nothing(tmp_path, monkeypatch):
    staging = _bundle(tmp_path / "staging", "new")
    out = _bundle(tmp_path / "runs" / "app-1" / "bundle", "old")
    real = shutil.copyfile

    def full(src, dst, *a, **k):
        if Path(src).name == "model.safetensors":
            real(src, dst)
            with open(dst, "r+b") as fh:
                fh.truncate(100)  # half the weights on disk, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(OutputError, match="No space left on device"):
        publish_bundle(staging, out)
    assert json.loads((out / "card.json").read_text())["name"] == "old" and (out / "model.safetensors").read_bytes().startswith(b"old")
    assert _hidden(out.parent) == [] and _hidden(out) == []
    assert find_bundles(tmp_path / "runs") == [out.resolve()]
    fresh = tmp_path / "runs" / "app-2" / "bundle"
    with pytest.raises(OutputError):
        publish_bundle(staging, fresh)
    assert not fresh.exists() and _hidden(fresh.parent) == []


def test_a_folder_with_other_files_is_updated_in_place_keeping_them(tmp_path):
    staging = _bundle(tmp_path / "staging", "new")
    out = _bundle(tmp_path / "mine", "old")
    (out / "README.md").write_text("my notes")
    publish_bundle(staging, out)
    assert (out / "README.md").read_text() == "my notes" and json.loads((out / "card.json").read_text())["name"] == "new"
    assert _hidden(out) == []


HANG = textwrap.dedent("""
    import sys, time
    import trainer.calibration as calibration

    def hang(*args, **kwargs):  # the bundle is being made: calibration, then held-out scores
        print("MAKING-BUNDLE", flush=True)
        time.sleep(600)

    calibration.validation_calibration = hang
    from trainer.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_a_trainer_killed_while_making_its_bundle_leaves_no_bundle_and_the_app_opens(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    run_dir = runs / "app-20261202-090000"
    run_dir.mkdir(parents=True)
    log = open(run_dir / "trainer.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-c", HANG, "fit", "--config", str(SMOKE), "--set", f"output.dir={run_dir}"],
                            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    from app import training

    info = training.RunInfo(name=run_dir.name, card_name="smoke", config="tests/trainer/smoke.yaml", max_epochs=1, init_from=None,
                            pid=proc.pid, started=time.time(), owner="x")
    (run_dir / training.JOB_FILE).write_text(json.dumps(info.__dict__))  # as the Train page records a run it starts
    try:
        deadline = time.time() + 600
        while "MAKING-BUNDLE" not in (run_dir / "trainer.log").read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, (run_dir / "trainer.log").read_text()[-3000:]
        assert find_bundles(runs) == []  # trained and saved, being scored: nothing in the runs folder yet
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert find_bundles(runs) == [] and not list(runs.rglob("card.json")) and not list(runs.rglob("*.partial*"))
    assert (run_dir / "checkpoints" / "last.ckpt").exists()  # the run can be resumed

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.state import TrainingJob
    from tests.app.conftest import MAIN, goto

    monkeypatch.setenv("LULC_RUNS_DIR", str(runs))
    monkeypatch.setattr(training, "RUNS_DIR", runs)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    assert not at.exception
    at.session_state["lulc_state"].job = TrainingJob(pid=proc.pid, run_dir=str(run_dir), config=info.config,
                                                     log_path=str(run_dir / "trainer.log"), started=info.started)
    goto(at, "train")  # the session that started it: the run ended without a bundle, and says so; Start again
    assert [e.value for e in at.error] == ["Training failed; the trainer's last lines:"], [e.value for e in at.error]
    assert at.button(key="train_start").label == "Start again" and not at.success
    assert training.running_runs() == []
    fresh = AppTest.from_file(MAIN, default_timeout=300)  # the app restarted: a new session
    fresh.run()
    goto(fresh, "train")
    assert not fresh.error and not fresh.warning, [e.value for e in [*fresh.error, *fresh.warning]]
    assert not any("app-20261202-090000" in str(o) for o in fresh.selectbox(key="train_init").options)  # no bundle listed
    goto(fresh, "models")
    assert not fresh.error, [e.value for e in fresh.error]
