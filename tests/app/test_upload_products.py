"""Uploads as users download them: the Explore page reads a zipped Sentinel-2 SAFE product (issue 24)."""

from __future__ import annotations

import numpy as np
import pytest

from app.services import load_upload
from core.sources.downloads import ProductError
from tests.core.test_downloads import CROP, SD, make_safe, pack_crop


def test_the_app_reads_an_uploaded_safe_zip(tmp_path, data_dir, monkeypatch):
    """The Explore page's upload takes a zipped SAFE product: bands named, level and offset from its metadata,
    and the messages name the user's file."""
    monkeypatch.setenv("LULC_CACHE_DIR", str(tmp_path / "cache"))
    bands, crs, t = pack_crop(data_dir, SD)
    bands.pop("B10", None)
    z = make_safe(tmp_path / "dl", bands, crs, t, level="2A", zip_it=True)
    r = load_upload(z.name, z.read_bytes())
    assert r.meta["name"] == z.name and r.crs == crs and (r.height, r.width) == (CROP, CROP)
    assert {"B2", "B4", "B8", "B11", "B12"} <= set(r.band_names)
    np.testing.assert_array_equal(r.data[list(r.band_names).index("B2")], bands["B2"])
    broken = make_safe(tmp_path / "dl2", bands, crs, t, level="2A", zip_it=True, drop=("B11", "B12"))
    with pytest.raises(ProductError) as caught:
        load_upload("mine.zip", broken.read_bytes())
    assert "B11" in str(caught.value)
