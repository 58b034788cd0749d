"""A Landsat 8/9 Collection 2 Level-2 run in CI size (issue 18), on a stacked GeoTIFF the test writes.

The file is the example of a Landsat training input (the sample pack has no Landsat scene): SR_B1..SR_B7 as uint16
DN (USGS C2 L2 surface reflectance: reflectance = DN x 0.0000275 - 0.2, fill 0), 30 m pixels in UTM zone 30N, band
descriptions ``SR_B1``..``SR_B7`` as USGS names the files; labels on the same grid and a CSV class file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine

from core.config import REPO_ROOT

SR = [f"SR_B{i}" for i in range(1, 8)]
SCALE, OFFSET = 0.0000275, -0.2  # USGS Landsat 8-9 C2 L2 Science Product Guide (LSDS-1619), surface reflectance
# typical surface reflectance of crop (bright NIR) and forest (darker visible, NIR a little lower), SR_B1..SR_B7
REFLECTANCE = {1: [0.05, 0.06, 0.09, 0.10, 0.32, 0.25, 0.15], 2: [0.02, 0.03, 0.05, 0.03, 0.28, 0.14, 0.06]}


def _write(path, data, transform, names=None, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=data.dtype.name, transform=transform, crs="EPSG:32630", nodata=nodata) as ds:
        ds.write(data)
        for i, n in enumerate(names or [], start=1):
            ds.set_band_description(i, n)
    return path


@pytest.fixture(scope="module")
def landsat(tmp_path_factory):
    """(folder, image path, expected reflectance x 1e4 band means): a 96 x 96 px C2 L2 stack, its labels and class file."""
    d = tmp_path_factory.mktemp("landsat")
    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[:96, :96]
    lab = np.where((yy // 16 + xx // 16) % 2 == 0, 1, 2).astype(np.uint8)  # 16 px checkerboard: every block holds both
    refl = np.stack([np.choose(lab - 1, [np.full(lab.shape, REFLECTANCE[1][b]), np.full(lab.shape, REFLECTANCE[2][b])])
                     for b in range(7)]) + rng.normal(0, 0.01, (7, 96, 96))
    dn = np.round((refl - OFFSET) / SCALE).astype(np.uint16)  # the DN a C2 L2 file stores
    t = Affine(30, 0, 420000, 0, -30, 4580000)
    image = _write(d / "LC09_L2SP_204032_20230612_SR_stack.tif", dn, t, SR, nodata=0)
    _write(d / "labels.tif", lab[None], t, nodata=0)
    (d / "classes.csv").write_text("id,name,color\n1,crop,#e49635\n2,forest,#397d49\n0,nodata,#000000\n")
    expected = (dn.astype(np.float64) * SCALE + OFFSET).reshape(7, -1).mean(1) * 1e4
    return d, image, expected


def test_landsat_fit_writes_sensor_gsd_and_sr_bands_in_the_card(landsat):
    d, image, expected = landsat
    cfg = {"name": "landsat-c2l2", "seed": 4,
           "data": {"bands": SR, "files": [{"image": str(image), "labels": str(d / "labels.tif"), "scheme": str(d / "classes.csv")}],
                    "block_size": 32, "chip_size": 32, "train_stride": 32, "batch_size": 4},
           "trainer": {"max_epochs": 1, "limit_train_batches": 2, "progress_bar": False, "log_every_n_steps": 1},
           "output": {"dir": str(d / "run")}}
    (d / "landsat.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "trainer", "fit", "--config", str(d / "landsat.yaml")], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((d / "run" / "bundle" / "card.json").read_text())
    assert card["sensor"] == "L8/9" and card["gsd_m"] == 30.0 and card["bands"] == SR
    assert [c["name"] for c in card["classes"]["classes"]] == ["crop", "forest"]
    # band means in reflectance x 1e4, i.e. after DN x 0.0000275 - 0.2 (without the offset they would be ~2000 higher)
    assert np.allclose(card["mean"], expected, atol=0.03 * expected.max()), (card["mean"], expected.tolist())
    assert card["metrics"]["held_out"] and card["metrics"]["held_out"][0]["metrics"]["miou"] is not None


def test_landsat_file_for_the_sentinel2_default_bundle_is_refused(landsat, tmp_path):
    """``trainer predict`` refuses it in one line before any pixel is read (its 30 m pixels against the model's 10 m); the input
    decision, the same for the app, names both sensors, both GSDs and the file's SR_ bands."""
    from core.errors import LulcError
    from core.inference.policy import input_for_file
    from models.bundle import load_bundle

    _, image, _ = landsat
    out = tmp_path / "classes.tif"
    r = subprocess.run([sys.executable, "-m", "trainer", "predict", "--checkpoint", str(REPO_ROOT / "models" / "default"),
                        "--input", str(image), "--output", str(out)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    msg = r.stderr.strip()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(msg.splitlines()) == 1 and "30 m" in msg and "10 m" in msg, msg
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(LulcError) as e:
        input_for_file(image, load_bundle(REPO_ROOT / "models" / "default").card)
    msg = str(e.value)
    assert "\n" not in msg and "Landsat 8/9" in msg and "30 m" in msg and "Sentinel-2" in msg and "10 m" in msg, msg
    assert all(b in msg for b in SR), msg
