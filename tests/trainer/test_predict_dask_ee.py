"""``predict --engine dask --aoi``: blocks fetched from Earth Engine by the workers (a fake adapter
answering from the Brandenburg scene), against single-process ``predict`` on the same pixels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("distributed")

from core.config import DEFAULT_BUNDLE_DIR  # noqa: E402
from core.errors import AOIError  # noqa: E402
from core.sources.samples import get_scene  # noqa: E402
from tests.core.test_distributed import FakeEarthEngineFactory  # noqa: E402
from trainer.predict import parse_aoi_bounds, predict, predict_dask  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
AOI = "12.55,52.47,12.58,52.49"  # inside the Brandenburg scene (UTM 33N)


def test_aoi_blocks_from_earth_engine_equal_single_process_predict(tmp_path):
    log = tmp_path / "requests.log"
    factory = FakeEarthEngineFactory(str(get_scene("brandenburg-2017-02-16").path / "image_s2.tif"), str(log))
    out = predict_dask(str(DEFAULT_BUNDLE_DIR), None, str(tmp_path / "ee.tif"), aoi=AOI, start="2017-02-01", end="2017-02-28",
                       adapter_factory=factory, workers=1, block_size=96, tile=64, overlap=16)
    with rasterio.open(out) as d:
        ee_cls, crs, transform, tags = d.read(1), d.crs, d.transform, d.tags()
    assert crs.to_epsg() == 32633 and transform.a == 10.0 and ee_cls.shape[0] > 150
    assert tags["LULC_EE_DATES"] == "2017-02-01..2017-02-28"
    # the same pixels as a file, through the single-process path
    from core.sources.earth_engine import PixelGrid, sentinel2_spec

    grid = PixelGrid("EPSG:32633", tuple(transform)[:6], ee_cls.shape[1], ee_cls.shape[0])
    card_bands = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]
    arr = factory().compute_pixels(sentinel2_spec("2017-02-01", "2017-02-28", card_bands), grid)
    prof = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": len(card_bands), "dtype": "uint16",
            "crs": crs, "transform": transform, "nodata": 0}
    with rasterio.open(tmp_path / "aoi.tif", "w", **prof) as d:
        d.write(arr)
        d.descriptions = tuple(card_bands)
    predict(str(DEFAULT_BUNDLE_DIR), str(tmp_path / "aoi.tif"), str(tmp_path / "stream.tif"), tile=64, overlap=16, quiet=True)
    with rasterio.open(tmp_path / "stream.tif") as d:
        np.testing.assert_array_equal(d.read(1), ee_cls)


def test_aoi_parsing_refuses_bad_boxes(tmp_path):
    assert parse_aoi_bounds(AOI) == (12.55, 52.47, 12.58, 52.49)
    for bad in ("12.58,52.47,12.55,52.49", "1,2,3", "a,b,c,d", "0,95,1,96"):
        with pytest.raises(AOIError):
            parse_aoi_bounds(bad)


def test_cli_aoi_without_credentials_says_what_to_set_and_writes_nothing(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EE_CONFIG_DIR": str(tmp_path)}
    out = tmp_path / "map.tif"
    p = subprocess.run([sys.executable, "-m", "trainer", "predict", "--checkpoint", str(DEFAULT_BUNDLE_DIR), "--engine", "dask",
                        "--aoi", AOI, "--start", "2021-06-01", "--end", "2021-06-30", "--output", str(out)],
                       cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "EARTHENGINE_PROJECT" in p.stderr and "Traceback" not in p.stderr
    assert not out.exists() and not list(tmp_path.glob("map.tif*"))
