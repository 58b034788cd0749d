"""Chip export from Earth Engine (fake adapter), resume, batch mode, and reading the chips back."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import rasterio

from core.classes import get_scheme
from core.config import REPO_ROOT
from core.sources.earth_engine import CollectionSpec, PixelGrid
from tests.core.test_map_outputs import gdal_rat, gdalinfo_json
from trainer.config import load_config
from trainer.data import load_exported_chips
from trainer.export import ExportSettings, chip_grid, export_chips

CLOUDY_LON = 12.9  # the fake returns masked (cloudy) optical pixels for points at this longitude


class FakeEarthEngine:
    def __init__(self):
        self.calls: list[tuple[str, PixelGrid]] = []
        self.exports: list[tuple[str, str, str]] = []

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:
        self.calls.append((spec.collection, grid))
        h, w = grid.height, grid.width
        yy, xx = np.mgrid[0:h, 0:w]
        if spec.collection.startswith("COPERNICUS/S2"):
            lon = _lon_of(grid)
            base = np.zeros((h, w)) if abs(lon - CLOUDY_LON) < 0.01 else 500 + 10 * xx
            return np.stack([base + 100 * i for i in range(len(spec.bands))]).astype(spec.dtype)
        if spec.collection == "COPERNICUS/S1_GRD":
            return np.stack([np.full((h, w), -12.0), np.full((h, w), -19.0)]).astype(spec.dtype)
        return ((xx // 8 + yy // 8) % 9)[None].astype(spec.dtype)

    def export(self, spec, grid, name, kind, destination):
        self.exports.append((spec.collection, name, destination))
        return f"task-{len(self.exports)}"


def _lon_of(grid: PixelGrid) -> float:
    from pyproj import Transformer

    x = grid.transform[2] + grid.width * grid.transform[0] / 2
    y = grid.transform[5] + grid.height * grid.transform[4] / 2
    return Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)[0]


@pytest.fixture
def points(tmp_path):
    p = tmp_path / "points.csv"
    pd.DataFrame({"id": ["de1", "de2", "cloudy"], "lon": [12.55, 12.65, CLOUDY_LON], "lat": [52.47, 52.50, 52.48],
                  "country": ["DE", "DE", "DE"]}).to_csv(p, index=False)
    return p


SETTINGS = ExportSettings(start="2021-06-01", end="2021-09-01", bands=("B2", "B3", "B4", "B8"), size=64)


def test_export_writes_georeferenced_chips_and_manifest(points, tmp_path):
    fake = FakeEarthEngine()
    out = tmp_path / "chips"
    m = export_chips(fake, points, out, SETTINGS)
    assert list(m.status) == ["ok", "ok", "skipped"] and "masked" in m.reason.iloc[2]
    with rasterio.open(out / "de1.tif") as ds:
        assert ds.crs.to_epsg() == 32633 and ds.res == (10.0, 10.0) and ds.shape == (64, 64)
        assert ds.descriptions == ("B2", "B3", "B4", "B8", "VV", "VH")
    with rasterio.open(out / "de1_label.tif") as ds:
        assert ds.read(1).max() == 8 and ds.colormap(1)[0][:3] == (0x41, 0x9B, 0xDF)
    # QGIS and ArcGIS show the label chips by class name: a RAT read back by GDAL, and a same-name .qml
    rat = gdal_rat(gdalinfo_json(out / "de1_label.tif"))
    assert rat is not None and [row["f"][2] for row in rat["row"]] == get_scheme("dynamic_world").names
    assert "water" in (out / "de1_label.qml").read_text()
    collections = {c for c, _ in fake.calls}
    assert collections == {"COPERNICUS/S2_HARMONIZED", "COPERNICUS/S1_GRD", "GOOGLE/DYNAMICWORLD/V1"}


def test_export_resumes_where_it_stopped(points, tmp_path):
    out = tmp_path / "chips"
    export_chips(FakeEarthEngine(), points, out, SETTINGS)
    again = FakeEarthEngine()
    m = export_chips(again, points, out, SETTINGS)
    assert not again.calls and len(m) == 3
    more = pd.concat([pd.read_csv(points), pd.DataFrame({"id": ["de3"], "lon": [12.6], "lat": [52.49], "country": ["DE"]})])
    more.to_csv(points, index=False)
    third = FakeEarthEngine()
    m = export_chips(third, points, out, SETTINGS)
    assert len(m) == 4 and len(third.calls) == 3  # S2, S1 and labels of the new point only


def test_batch_mode_submits_export_tasks(points, tmp_path):
    fake = FakeEarthEngine()
    m = export_chips(fake, points, tmp_path / "b", SETTINGS, batch="gcs", destination="my-bucket")
    assert set(m.status) == {"submitted"} and len(fake.exports) == 9 and not fake.calls
    assert {d for _, _, d in fake.exports} == {"my-bucket"}
    with pytest.raises(ValueError, match="destination"):
        export_chips(fake, points, tmp_path / "c", SETTINGS, batch="drive")


def test_chip_grid_is_centred_in_utm():
    g = chip_grid(12.6, 52.48, 224)
    assert g.crs == "EPSG:32633" and g.width == g.height == 224 and g.transform[2] % 10 == 0
    assert abs(_lon_of(g) - 12.6) < 0.001


def test_trainer_reads_exported_chips(points, tmp_path):
    out = tmp_path / "chips"
    export_chips(FakeEarthEngine(), points, out, SETTINGS)
    cfg = load_config(REPO_ROOT / "tests" / "trainer" / "smoke.yaml",
                      [f"data.chips_dir={out}", "data.scenes=[]", "data.bands=[B4, B8, VV]"])
    scenes, scheme = load_exported_chips(cfg)
    assert scheme.name == "dynamic_world" and len(scenes) == 2
    s = scenes[0]
    assert s.image.shape == (3, 64, 64) and s.image[2, 0, 0] == -12.0 and s.target.max() == 8
    assert s.blocks[0].split in {"train", "val", "test"}


def test_bad_points_csv(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="lon and lat"):
        export_chips(FakeEarthEngine(), p, tmp_path / "o", SETTINGS)


def test_cli_without_credentials_explains_what_to_configure(points, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EE_CONFIG_DIR": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "trainer", "export-chips", "--points", str(points), "--out", str(tmp_path / "o"),
                        "--start", "2021-06-01", "--end", "2021-09-01"], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "EARTHENGINE_PROJECT" in p.stderr and "Traceback" not in p.stderr


KILL_SCRIPT = """
import sys, time
import pandas as pd
import trainer.export as export
from tests.trainer.test_export_chips import FakeEarthEngine, SETTINGS

class Slow(FakeEarthEngine):
    def compute_pixels(self, spec, grid):
        time.sleep(0.05)
        return super().compute_pixels(spec, grid)

export.MANIFEST_BATCH = 3
export.export_chips(Slow(), sys.argv[1], sys.argv[2], SETTINGS)
"""


def test_a_killed_export_leaves_whole_manifest_rows_and_resumes(tmp_path):
    """SIGKILL during an export: the manifest holds only whole rows (it is rewritten atomically per batch of rows),
    and a rerun fetches only the points without a row, so every point ends with exactly one ``ok`` row."""
    import os
    import signal
    import time

    n = 30
    pts = tmp_path / "many.csv"
    pd.DataFrame({"id": [f"p{i:02d}" for i in range(n)], "lon": np.linspace(12.50, 12.70, n), "lat": [52.48] * n,
                  "country": ["DE"] * n}).to_csv(pts, index=False)
    out = tmp_path / "chips"
    manifest = out / "manifest.csv"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(pts), str(out)], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not manifest.exists() or manifest.read_text().count("\n") < 7):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    text = manifest.read_text()
    assert text.endswith("\n")
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert 6 <= len(rows) < n, "the kill came too late or too early to test a resume"
    assert rows.id.is_unique and set(rows.status) == {"ok"}
    width = len(text.splitlines()[0].split(","))
    assert all(len(line.split(",")) >= width for line in text.splitlines())  # no half row
    again = FakeEarthEngine()
    m = export_chips(again, pts, out, SETTINGS)
    assert len(m) == n and set(m.status) == {"ok"} and m.id.is_unique
    assert len(again.calls) == 3 * (n - len(rows))  # S2, S1 and labels of the points without a row only


FULL_SCRIPT = """
import resource, sys
import trainer.export as export
from tests.trainer.test_export_chips import FakeEarthEngine, SETTINGS

export.MANIFEST_BATCH = 2
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
export.export_chips(FakeEarthEngine(), sys.argv[1], sys.argv[2], SETTINGS, batch="gcs", destination="bucket")
"""


def test_a_disk_that_fills_during_an_export_leaves_whole_manifest_rows(tmp_path):
    """The file-size limit is hit while the manifest grows (batch mode writes no chips, only the manifest): the
    manifest on disk is the last complete one, never a half row, and a rerun without the limit completes it."""
    import os

    n = 40
    pts = tmp_path / "many.csv"
    pd.DataFrame({"id": [f"p{i:02d}" for i in range(n)], "lon": np.linspace(12.50, 12.70, n), "lat": [52.48] * n,
                  "country": ["DE"] * n}).to_csv(pts, index=False)
    out = tmp_path / "chips"
    limit = 2500  # bytes: a few rows of about 150 bytes
    run = subprocess.run([sys.executable, "-c", FULL_SCRIPT, str(pts), str(out), str(limit)], cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "File too large" in run.stderr
    text = (out / "manifest.csv").read_text()
    assert 0 < len(text) <= limit and text.endswith("\n")
    rows = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert 2 <= len(rows) < n and set(rows.status) == {"submitted"}
    assert not [p for p in out.iterdir() if p.name != "manifest.csv"], "a temporary file was left behind"
    m = export_chips(FakeEarthEngine(), pts, out, SETTINGS, batch="gcs", destination="bucket")
    assert len(m) == n and m.id.is_unique
