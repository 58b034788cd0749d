"""Chart, map and training-process builders, tested directly."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from rasterio.crs import CRS

from app import charts, maps, training
from core.evaluation.comparison import compare
from core.inference.streaming import ClassMap
from core.io.raster import GeoRaster
from core.sources.samples import list_scenes


@pytest.fixture
def result():
    t = Affine(10, 0, 330000, 0, -10, 5822040)
    crs = CRS.from_epsg(32633)
    pred = np.array([[0, 1, 1], [2, 4, 255]], np.uint8)[None]
    ref = np.array([[0, 1, 2], [2, 4, 4]], np.uint8)[None]
    cm = ClassMap(GeoRaster(pred, crs, t, 255, ("class",)), GeoRaster(np.ones_like(pred, np.float32), crs, t, None, ("confidence",)))
    return compare(cm, "dynamic_world", GeoRaster(ref, crs, t, 255, ("label",)), "dynamic_world")


def test_compare_counts_and_areas(result):
    assert result.metrics.pixels == 5 and result.excluded_fraction == pytest.approx(1 / 6)
    areas = {a.name: a for a in result.areas}
    assert areas["trees"].predicted_km2 == pytest.approx(200 / 1e6) and areas["trees"].reference_km2 == pytest.approx(100 / 1e6)
    assert sum(a.predicted_pct for a in result.areas) == pytest.approx(100)


def test_iou_bar_uses_class_colours_and_marks_miou(result):
    fig = charts.iou_bar(result)
    bar = fig.data[0]
    assert list(bar.x)[:3] == ["water", "trees", "grass"] and bar.marker.color[0] == "#419bdf"
    assert bar.y[0] == 1.0 and bar.y[1] == pytest.approx(0.5) and bar.y[3] is None  # flooded_vegetation absent
    assert any("mIoU" in a.text for a in fig.layout.annotations)


def test_confusion_heatmap_rows_are_reference(result):
    fig = charts.confusion_heatmap(result)
    z = np.array(fig.data[0].z)
    assert z.shape == (9, 9) and z[1, 1] == 1.0 and z[2, 1] == pytest.approx(0.5)


def test_tables(result):
    t = charts.areas_table(result)
    assert list(t.columns) == ["class", "predicted km²", "reference km²", "predicted %", "reference %"]
    assert charts.metrics_table(result).loc[0, "class"] == "water"
    assert len(charts.prf_bar(result).data) == 3


def test_training_curves_from_lightning_log():
    log = pd.DataFrame({"epoch": [0, 0, 1, 1], "train_loss_epoch": [None, 1.5, None, 1.2], "val_miou": [0.2, None, 0.3, None]})
    fig = charts.training_curves(log)
    assert {d.name for d in fig.data} == {"train_loss_epoch", "val_miou"}
    assert training.latest(log) == (1, 0.3) and training.latest(pd.DataFrame()) == (0, None)


def test_map_serves_leaflet_locally_and_draws_overlays(data_dir):
    scenes = list_scenes(data_dir)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    m = maps.build_map(scenes, selected="brandenburg-2017-02-16",
                       overlays=[("pred", rgba, CRS.from_epsg(32633), Affine(10, 0, 330000, 0, -10, 5822040), 0.5)])
    html = m.get_root().render()
    assert "/app/static/vendor/leaflet/leaflet.js" in html and "cdn.jsdelivr.net/npm/leaflet" not in html
    assert "leaflet.draw.js" in html and "data:image/png;base64," in html
    assert html.count("L.rectangle") == sum(s.georeferenced for s in scenes)  # one footprint per georeferenced scene
    offline = maps.build_map(scenes, draw=False)
    assert "tileLayer" not in offline.get_root().render()
    online = maps.build_map(scenes, basemap="OpenStreetMap", draw=False)
    assert "tile.openstreetmap.org" in online.get_root().render()


def test_class_overlays_stay_exact_and_imagery_is_sent_as_webp():
    import base64
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    palette = np.array([[65, 155, 223, 255], [57, 125, 73, 255], [228, 150, 53, 255]], np.uint8)
    classes = palette[rng.integers(0, 3, (40, 60))]
    url = maps.overlay_data_url(classes)
    assert url.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))
    assert np.array_equal(back, classes)  # lossless: every pixel keeps its class colour
    imagery = maps.overlay_data_url(classes, imagery=True)
    assert imagery.startswith("data:image/webp;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(imagery.split(",", 1)[1]))).size == (60, 40)


def test_overlay_is_warped_to_web_mercator():
    from core.products.render import warp_for_web

    rgba = np.full((100, 100, 4), 255, np.uint8)
    out, (s, w, n, e) = warp_for_web(rgba, CRS.from_epsg(32633), Affine(10, 0, 330000, 0, -10, 5822040))
    assert 52.4 < s < n < 52.6 and 12.4 < w < e < 12.6 and out.shape[2] == 4
    assert (out[..., 3] > 0).mean() > 0.9


@pytest.mark.slow
def test_training_job_runs_in_background_and_is_followed(tmp_path):
    job = training.launch("tests/trainer/smoke.yaml", max_epochs=1, run_name=f"test-{int(time.time())}")
    try:
        deadline = time.time() + 300
        while training.status(job) == "running" and time.time() < deadline:
            time.sleep(1)
        assert training.status(job) == "finished", training.log_tail(job, 40)
        log = training.progress(job)
        assert "val_miou" in log and log["val_miou"].notna().any()
        assert json.loads((__import__("pathlib").Path(job.run_dir) / "bundle" / "card.json").read_text())["name"] == "smoke"
    finally:
        training.stop(job)
        import shutil

        shutil.rmtree(job.run_dir, ignore_errors=True)


def test_a_stopped_training_run_reads_stopped_on_every_refresh(tmp_path):
    import subprocess
    import sys
    import time

    from app.state import TrainingJob

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    job = TrainingJob(pid=proc.pid, run_dir=str(tmp_path), config="x.yaml", log_path=str(tmp_path / "log"), started=time.time())
    assert training.status(job) == "running"
    training.stop(job)
    for _ in range(100):
        if training.status(job) != "running":
            break
        time.sleep(0.05)
    assert [training.status(job) for _ in range(3)] == ["stopped"] * 3  # reaped once, the same answer after
    crashed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"], start_new_session=True)
    crashed.wait()  # reaped here: status must still tell failed from stopped
    other = TrainingJob(pid=crashed.pid, run_dir=str(tmp_path / "b"), config="x.yaml", log_path="", started=time.time())
    (tmp_path / "b").mkdir()
    assert training.status(other) == "failed"
