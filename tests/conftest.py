"""Shared fixtures: the sample pack location and small rasters written by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from core.config import DEFAULT_DATA_DIR
from core.io.raster import GeoRaster, write_cog

# The app turns a bug on a page into one short message and a crash log (app/main.py); under test the exception
# itself must surface (AppTest's ``at.exception``, the browser tests), so tests see bugs instead of a polite message.
# tests/app/test_page_errors.py switches this off to test the message.
os.environ.setdefault("LULC_APP_RAISE", "1")

S2_BANDS9 = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = Path(os.environ.get("LULC_DATA_DIR", DEFAULT_DATA_DIR))
    if not (d / "samples").is_dir():
        pytest.fail(f"sample pack not found at {d}; it ships in ../shared/data beside the repository")
    return d


def make_raster(height: int = 96, width: int = 160, bands=S2_BANDS9, seed: int = 0, crs: str | None = "EPSG:32633") -> GeoRaster:
    """A uint16 reflectance-like raster with a real CRS and 10 m transform."""
    rng = np.random.default_rng(seed)
    data = rng.integers(300, 4000, size=(len(bands), height, width), dtype=np.uint16)
    return GeoRaster(
        data=data,
        crs=CRS.from_string(crs) if crs else None,
        transform=Affine(10.0, 0.0, 330000.0, 0.0, -10.0, 5822040.0),
        nodata=0,
        band_names=tuple(bands),
    )


@pytest.fixture
def small_tif(tmp_path: Path) -> Path:
    """A 9-band uint16 GeoTIFF (EPSG:32633, 10 m) with a nodata corner."""
    r = make_raster()
    r.data[:, :5, :7] = 0
    return write_cog(r, tmp_path / "small.tif")


def toy_policy(tile: int = 256, overlap: int = 32, batch_size: int = 8, height: int = 256, width: int = 256):
    """A run policy (:func:`core.inference.policy.plan_run`) for a test's toy forward function: tiled, fp32."""
    from types import SimpleNamespace

    from core.inference.policy import plan_run

    card = SimpleNamespace(name="toy", arch="toy", tile=tile, preprocessing="standardize", metrics={"overlap": overlap})
    return plan_run(card, height, width, batch_size=batch_size)
