"""Training data from files: image + labels + class file on one grid, reprojected, or refused (issue 18)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import rasterio
from affine import Affine

from core.errors import LulcError
from core.sources.files import load_file_pair, resolve_scheme

BANDS = ["B2", "B3", "B4", "B8"]


@dataclass(frozen=True)
class _Card:
    bands: list
    mean: list
    name: str = "training data"
    optional_bands: tuple = ()
    levels: tuple = ()
    level_agreement: tuple = ()


CARD = _Card(BANDS, [0.0] * 4)


def _write(path, data, transform, crs="EPSG:32633", names=None, nodata=None):
    prof = dict(driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0], dtype=data.dtype.name,
                transform=transform, nodata=nodata, **({"crs": crs} if crs else {}))
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(data)
        for i, n in enumerate(names or [], start=1):
            ds.set_band_description(i, n)
    return path


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(300, 4000, size=(4, 64, 64)).astype(np.uint16)
    t = Affine(10, 0, 500000, 0, -10, 5000000)
    image = _write(tmp_path / "image.tif", img, t, names=BANDS, nodata=0)
    lab = np.zeros((1, 64, 64), np.uint8)
    lab[0, :32], lab[0, 32:] = 10, 20
    labels = _write(tmp_path / "labels.tif", lab, t, nodata=0)
    scheme = tmp_path / "classes.json"
    scheme.write_text(json.dumps({"values": [10, 20], "label": ["built", "water"], "palette": ["#ff0000", "#0000ff"], "ignore": 0}))
    return tmp_path, image, labels, resolve_scheme(str(scheme)), t


def test_same_grid(pair):
    _, image, labels, scheme, _ = pair
    p = load_file_pair(image, labels, scheme, CARD, level="L2A")
    assert p.image.shape == (4, 64, 64) and not p.notes
    assert set(np.unique(p.target)) == {0, 1}


def test_other_grid_is_reprojected_nearest(pair):
    d, image, _, scheme, t = pair
    lab = np.zeros((1, 32, 32), np.uint8)
    lab[0, :16], lab[0, 16:] = 10, 20
    labels = _write(d / "coarse.tif", lab, Affine(20, 0, 500000, 0, -20, 5000000), nodata=0)
    p = load_file_pair(image, labels, scheme, CARD, level="L2A")
    assert p.notes and "nearest neighbour" in p.notes[0]
    assert p.target.shape == (64, 64) and set(np.unique(p.target)) <= {0, 1, 255}


def test_refusals(pair):
    d, image, labels, scheme, t = pair
    far = _write(d / "far.tif", np.full((1, 64, 64), 10, np.uint8), Affine(10, 0, 900000, 0, -10, 5000000), nodata=0)
    with pytest.raises(LulcError, match="does not overlap"):
        load_file_pair(image, far, scheme, CARD, level="L2A")
    bad = _write(d / "bad.tif", np.full((1, 64, 64), 7, np.uint8), t, nodata=0)
    with pytest.raises(LulcError, match=r"value\(s\) 7 that are not classes"):
        load_file_pair(image, bad, scheme, CARD, level="L2A")
    nocrs = _write(d / "nocrs.tif", np.full((4, 64, 64), 1000, np.uint16), Affine.identity(), crs=None, names=BANDS)
    with pytest.raises(LulcError, match="has no CRS"):
        load_file_pair(nocrs, labels, scheme, CARD, level="L2A")
    ls = _write(d / "landsat.tif", np.full((4, 64, 64), 9000, np.uint16), t, names=["SR_B2", "SR_B3", "SR_B4", "SR_B5"])
    with pytest.raises(LulcError) as e:
        load_file_pair(ls, labels, scheme, CARD, level="L2A")
    assert "\n" not in str(e.value)


def test_landsat_file_for_a_sentinel2_model_names_both_sensors(tmp_path):
    from core.inputs.decision import decide

    with pytest.raises(LulcError) as e:
        decide(CARD, ["SR_B2", "SR_B3", "SR_B4", "SR_B5"], np.full((4, 8, 8), 9000, np.uint16), what="scene.tif")
    msg = str(e.value)
    assert "Landsat 8/9" in msg and "30 m" in msg and "Sentinel-2" in msg and "10 m" in msg and "\n" not in msg
