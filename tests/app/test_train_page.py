"""The Train page (issues 18 and 19): the YAML follows the choices, one training at a time, honest end states, progress per batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from app import training
from app.state import TrainingJob
from core.config import REPO_ROOT
from tests.app.conftest import goto

WALES = "../shared/data/extra/wales-aberystwyth-2021-05-27"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """An empty runs/ folder for the page (a live run elsewhere on the machine would refuse every start)."""
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setattr(training, "RUNS_DIR", d)
    return d


@pytest.fixture
def sleeper():
    """A live process standing in for a trainer."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield p
    p.kill()
    p.wait()


def _job(run_dir, pid: int) -> TrainingJob:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "trainer.log").write_text("Epoch 0: 40%\n")
    return TrainingJob(pid=pid, run_dir=str(run_dir), config="trainer/configs/fusion.yaml", log_path=str(run_dir / "trainer.log"),
                       started=time.time())


def _ended_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _yaml(at) -> dict:
    return yaml.safe_load(next(c.value for c in at.code if c.language == "yaml"))


def _geotiff(path, bands: int, crs="EPSG:32630") -> bytes:
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=bands, dtype="uint16", crs=crs,
                       transform=from_origin(400000, 5800000, 10, 10)) as dst:
        dst.write(np.ones((bands, 64, 64), dtype="uint16"))
    return path.read_bytes()


def test_yaml_reflects_scene_checkboxes_and_model_choices(app, runs):
    goto(app, "train")
    assert app.button(key="train_start").label == "Start training"
    assert "B2, B3, B4, B5" in " ".join(m.value for m in app.markdown)  # the config's bands are shown
    app.checkbox(key="train_scene_default_brandenburg-2017-02-16").uncheck().run()
    app.selectbox(key="train_encoder").set_value("resnet34").run()
    app.selectbox(key="train_loss").set_value("focal").run()
    app.number_input(key="train_batch").set_value(4).run()
    d = _yaml(app)
    ids = [s["id"] for s in d["data"]["scenes"]]
    assert "brandenburg-2017-02-16" not in ids and "hungary-2020-04-24" in ids and d["data"]["files"] == []
    assert {s["id"]: s["split"] for s in d["data"]["scenes"]}["dfc2020-roi0000-test-p0"] == "train"  # the config's split is kept
    assert (d["model"]["encoder"], d["loss"]["name"], d["data"]["batch_size"]) == ("resnet34", "focal", 4)
    for box in app.checkbox:
        box.uncheck()
    app.run()
    assert not [c for c in app.code if c.language == "yaml"] and app.button(key="train_start").disabled
    assert any("Tick at least one sample scene" in w.value for w in app.warning)
    assert any("Earth Engine chip export is not offered" in c.value for c in app.caption)  # not configured in the tests


def test_yaml_reflects_uploaded_files(app, runs, tmp_path):
    goto(app, "train")
    app.selectbox(key="train_config").set_value("trainer/configs/wales.yaml").run()
    assert _yaml(app)["data"]["files"][0]["scheme"].endswith("labels_rsgislib.json")
    app.radio(key="train_data_wales").set_value("Upload image + labels + class file").run()
    assert app.button(key="train_start").disabled
    app.file_uploader(key="train_image").set_value(("my scene.tif", _geotiff(tmp_path / "i.tif", 6), "image/tiff"))
    app.file_uploader(key="train_labels").set_value(("lab.tif", _geotiff(tmp_path / "l.tif", 1), "image/tiff"))
    app.file_uploader(key="train_scheme").set_value(("my classes.json", (REPO_ROOT / WALES / "labels_rsgislib.json").read_bytes(),
                                                      "application/json")).run()
    assert not app.exception
    (pair,) = _yaml(app)["data"]["files"]
    run = app.session_state["train_next_run"]
    assert pair["image"] == str(runs / run / "inputs" / "image.tif") and pair["scheme"].endswith(f"{run}/inputs/my_classes.json")
    assert (runs / run / "inputs" / "labels.tif").read_bytes() == (tmp_path / "l.tif").read_bytes()
    assert _yaml(app)["data"]["scenes"] == [] and not app.button(key="train_start").disabled
    app.file_uploader(key="train_labels").set_value(("lab.tif", _geotiff(tmp_path / "n.tif", 1, crs=None), "image/tiff")).run()
    assert any("labels file has no CRS" in w.value for w in app.warning) and app.button(key="train_start").disabled


def test_a_second_start_is_refused_naming_the_live_run(app, runs, sleeper, monkeypatch):
    other = runs / "app-20261202-070000"
    other.mkdir()
    (other / ".fit.lock").write_text(str(sleeper.pid))  # another session's trainer holds its run lock
    (other / "progress.json").write_text(json.dumps({"stage": "training", "epoch": 1, "max_epochs": 3, "batch": 4, "batches": 10,
                                                     "train_loss": 0.9}))
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))  # nothing may be spawned
    goto(app, "train")
    warning = " ".join(w.value for w in app.warning)
    assert "app-20261202-070000" in warning and "epoch 2 of 3, batch 4 of 10" in warning
    app.button(key="train_start").click().run()
    assert any("already going" in e.value and "app-20261202-070000" in e.value for e in app.error)
    assert not started and app.session_state["lulc_state"].job is None
    assert [d.name for d in runs.iterdir()] == ["app-20261202-070000"] or not list(runs.glob("app-*/job.json"))


def test_progress_is_read_mid_epoch(app, runs, sleeper):
    job = _job(runs / "app-20261202-071000", sleeper.pid)
    (runs / job.run_dir / "progress.json").write_text(json.dumps(
        {"stage": "training", "epoch": 0, "max_epochs": 3, "batch": 5, "batches": 10, "train_loss": 1.234,
         "points": [[0.1, 2.0], [0.3, 1.5], [0.5, 1.234]], "val_miou": None}))
    app.session_state["lulc_state"].job = job
    goto(app, "train")
    (bar,) = app.get("progress")
    assert bar.proto.value == pytest.approx(100 * 5 / 30, abs=1)  # epoch 0, batch 5 of 10, of 3 epochs
    assert "epoch 1 of 3, batch 5 of 10 (train loss 1.234)" in bar.proto.text
    fig = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert fig["layout"]["xaxis"]["range"] == [0, 3] and fig["layout"]["yaxis"]["range"][0] == 0
    assert any(t.get("name") == "train loss (per batch)" and len(t["x"]) == 3 for t in fig["data"])
    assert app.button(key="train_stop") and not [b for b in app.button if b.key == "train_start"]  # no second start while it runs


def test_stopped_run_says_whether_a_checkpoint_exists(app, runs):
    job = _job(runs / "app-20261202-072000", _ended_pid())
    (runs / job.run_dir / training.STOP_MARK).write_text("x")
    app.session_state["lulc_state"].job = job
    goto(app, "train")
    text = " ".join(i.value for i in app.info)
    assert "no checkpoint (last.ckpt) was written" in text and "--resume" not in text
    (runs / job.run_dir / "checkpoints").mkdir()
    (runs / job.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    app.run()
    text = " ".join(i.value for i in app.info)
    assert f"python -m trainer fit --config {job.run_dir}/train.yaml --resume" in text and "no checkpoint" not in text


def test_failed_run_shows_the_trainers_last_lines(app, runs):
    job = _job(runs / "app-20261202-072500", _ended_pid())
    (runs / job.run_dir / "trainer.log").write_text("reading data\nerror: data.files image.tif: the labels do not overlap the image\n")
    app.session_state["lulc_state"].job = job
    goto(app, "train")
    assert any("Training failed: data.files image.tif: the labels do not overlap the image" in e.value for e in app.error)
    assert any("reading data" in c.value for c in app.code)


def test_start_again_after_a_finished_run(app, runs, sleeper, monkeypatch):
    job = _job(runs / "app-20261202-073000", _ended_pid())
    bundle = runs / job.run_dir / "bundle"
    bundle.mkdir()
    card = json.loads((REPO_ROOT / "models" / "default" / "card.json").read_text())
    card["name"] = "app-20261202-0730 (fusion, 3 epochs)"
    (bundle / "card.json").write_text(json.dumps(card))
    shutil.copy(REPO_ROOT / "models" / "default" / "model.safetensors", bundle / "model.safetensors")
    (runs / job.run_dir / "comparison.json").write_text(json.dumps({"groups": [{
        "reference": "dw labels of the sample-pack scenes", "windows": "4 test block(s)", "pixels": 1000, "skipped": [],
        "rows": [{"role": "new", "model": card["name"], "path": str(bundle), "miou": 0.61234, "overall_accuracy": 0.8, "crosswalk": None},
                 {"role": "dynamic_world", "model": "dynamicworld", "path": "models/dynamicworld", "miou": 0.9, "overall_accuracy": 0.95,
                  "crosswalk": None}]}]}))
    app.session_state["lulc_state"].job = job
    calls = []

    def fake_launch(config, epochs, run_name=None, overrides=None, before=None, bundle_name=None, owner=""):
        calls.append((config, epochs, run_name, bundle_name))
        return _job(runs / "app-20261202-074000", sleeper.pid)

    monkeypatch.setattr(training, "launch", fake_launch)
    goto(app, "train")
    body = " ".join(m.value for m in app.markdown)
    assert "app-20261202-0730 (fusion, 3 epochs)" in body and "Bands: B2" in body  # the card summary of the new bundle
    table = app.dataframe[0].value
    assert list(table["mIoU"]) == ["0.612", "0.900"] and "same 1,000 pixels" in " ".join(c.value for c in app.caption)
    assert app.button(key="train_start").label == "Start again" and app.button(key="train_open")
    app.button(key="train_start").click().run()
    assert calls and app.session_state["lulc_state"].job.run_dir.endswith("app-20261202-074000")
    (config, epochs, run, name) = calls[0]
    assert run.startswith("app-") and name == training.card_name(run, config, epochs)  # the new bundle is named by run and date
    assert app.button(key="train_stop")  # the new run is followed on the same page


def test_open_on_explore_selects_the_new_bundle(app, runs, monkeypatch):
    job = _job(runs / "app-20261202-075000", _ended_pid())
    bundle = runs / job.run_dir / "bundle"
    bundle.mkdir()
    for name in ("card.json", "model.safetensors"):
        shutil.copy(REPO_ROOT / "models" / "default" / name, bundle / name)
    from app import services

    found = services.bundle_paths()
    monkeypatch.setattr(services, "bundle_paths", lambda: [*found, str(bundle.resolve())])  # as if under the repository's runs/
    app.session_state["lulc_state"].job = job
    goto(app, "train")
    app.button(key="train_open").click().run()
    assert not app.exception
    assert app.session_state["lulc_state"].bundle_path == str(bundle.resolve()) == app.session_state["bundle"]
    assert app.selectbox(key="bundle").value == str(bundle.resolve())  # Explore shows the new bundle selected


def test_launch_writes_the_yaml_it_runs_and_names_the_bundle(runs, monkeypatch, sleeper):
    seen = []

    class FakePopen:
        def __init__(self, cmd, **kw):
            seen.append(cmd)
            self.pid = sleeper.pid

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    job = training.launch("trainer/configs/fusion.yaml", 3, run_name="app-20261202-071005", overrides=training.page_overrides("focal"),
                          bundle_name=training.card_name("app-20261202-071005", "trainer/configs/fusion.yaml", 3))
    d = yaml.safe_load((runs / "app-20261202-071005" / "train.yaml").read_text())
    assert d["name"] == "app-20261202-0710 (fusion, 3 epochs)" and d["output"]["dir"] == job.run_dir and d["loss"]["name"] == "focal"
    assert seen[0][-2:] == ["--config", str(runs / "app-20261202-071005" / "train.yaml")]
    assert training.running_runs()[0][0].endswith("app-20261202-071005")  # its job.json names a live process
    with pytest.raises(training.TrainingBusyError, match="app-20261202-071005"):
        training.launch("trainer/configs/fusion.yaml", 1)
    (runs / "app-20261202-071005" / training.EXIT_MARK).write_text("0")
    assert training.running_runs() == []
    points = training.aoi_chip_points({"type": "Polygon", "coordinates": [[[0, 50], [0.1, 50], [0.1, 50.05], [0, 50.05], [0, 50]]]}, 224)
    assert 4 <= len(points) <= 12 and all(0 < x < 0.1 and 50 < y < 50.05 for x, y in points)
    before, ov = training.earth_engine_steps("app-20261202-080000", points, ["B2", "B3", "VV", "VH"], "2021-06-01", "2021-08-31")
    assert before[before.index("--bands") + 1] == "B2,B3" and "--no-s1" not in before
    assert (runs / "app-20261202-080000" / "inputs" / "points.csv").read_text().startswith("id,lon,lat\naoi-0000,")
    job = training.launch("trainer/configs/fusion.yaml", 1, run_name="app-20261202-080000", overrides=ov, before=before)
    assert seen[-1][:2] == ["/bin/sh", "-c"] and "export-chips" in seen[-1][2] and "&& exec" in seen[-1][2]


def _fake_popen(monkeypatch, pid: int) -> None:
    class FakePopen:
        def __init__(self, cmd, **kw):
            self.pid = pid

    monkeypatch.setattr(subprocess, "Popen", FakePopen)


def _other_session():
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import MAIN

    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    return goto(at, "train")


def test_another_session_follows_the_run_but_only_its_starter_or_an_admin_may_stop_it(app, runs, sleeper, monkeypatch):
    _fake_popen(monkeypatch, sleeper.pid)
    goto(app, "train")
    app.button(key="train_start").click().run()
    job = app.session_state["lulc_state"].job
    assert job is not None and app.button(key="train_stop")  # the starter may stop it
    (runs / job.run_dir / "progress.json").write_text(json.dumps({"stage": "training", "epoch": 0, "max_epochs": 5, "batch": 2,
                                                                  "batches": 10, "train_loss": 0.7}))
    other = _other_session()  # a second browser (or a reload without the browser's cookie)
    assert not [b for b in other.button if b.key == "train_stop"]
    assert any("started from another session" in h.value for h in other.subheader)
    assert any("epoch 1 of 5, batch 2 of 10" in p.proto.text for p in other.get("progress"))  # its progress, live
    assert any(training.STOP_REFUSED in i.value for i in other.info)
    assert any("already going" in w.value for w in other.warning) and other.session_state["lulc_state"].job is None
    with pytest.raises(training.TrainingBusyError, match="Only the session that started"):
        training.stop(job, "someone else", mine=False)
    assert sleeper.poll() is None and not (runs / job.run_dir / training.STOP_MARK).exists()
    monkeypatch.setenv("LULC_ADMIN", "1")
    other.run()
    assert other.button(key="train_stop")  # an administrator may stop any run


def test_a_reload_of_the_same_browser_keeps_its_run_and_its_stop_button(app, runs, sleeper, monkeypatch):
    _fake_popen(monkeypatch, sleeper.pid)
    monkeypatch.setattr(training, "owner_key", lambda state, cookies=None: "browser-1")  # the same browser's cookie
    goto(app, "train")
    app.button(key="train_start").click().run()
    started = app.session_state["lulc_state"].job
    reloaded = _other_session()  # a reload: a new session, the same browser
    assert reloaded.session_state["lulc_state"].job.run_dir == started.run_dir
    assert reloaded.button(key="train_stop") and not any(training.STOP_REFUSED in i.value for i in reloaded.info)
    assert json.loads((runs / started.run_dir / "job.json").read_text())["owner"] == "browser-1"


def test_the_owner_key_follows_the_browsers_cookie_else_the_session():
    from app.state import AppState

    a, b = AppState(), AppState()
    assert training.owner_key(a) != training.owner_key(b)  # two sessions without cookies
    assert training.owner_key(a) == training.owner_key(a)
    cookie = {training.XSRF_COOKIE: "2|abcd|efgh|1700000000"}
    assert training.owner_key(a, cookie) == training.owner_key(b, cookie)  # one browser, reloaded
    assert "efgh" not in training.owner_key(a, cookie)
