"""Band selection by name, Sentinel-2 offsets, GeoTIFF round trips and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from core.errors import BandError, RasterReadError
from core.inputs.bands import SENTINEL2_L1C, SENTINEL2_L2A, band_spec, check_band_names, harmonize_s2_dn
from core.io.raster import cog_bytes, read_raster, write_cog
from tests.conftest import make_raster


def test_select_bands_by_name_keeps_order_and_values():
    r = make_raster(bands=["B2", "B3", "B4", "B8"])
    sel = r.select(["B8", "B2"])
    assert sel.band_names == ("B8", "B2")
    np.testing.assert_array_equal(sel.data[0], r.data[3])
    np.testing.assert_array_equal(sel.data[1], r.data[0])


def test_missing_band_error_lists_missing_and_available():
    r = make_raster(bands=["B2", "B3", "B4"])
    with pytest.raises(BandError) as e:
        r.select(["B4", "B8", "B11"])
    msg = str(e.value)
    assert "B8" in msg and "B11" in msg and "B2, B3, B4" in msg


def test_check_band_names_rejects_duplicates_and_missing():
    check_band_names(["B2", "B3"], ["B3", "B2"])
    with pytest.raises(BandError, match="VV"):
        check_band_names(["B2", "B3"], ["B2", "VV"], what="the radar model")
    with pytest.raises(BandError, match="twice"):
        check_band_names(["B2", "B3"], ["B2", "B2"])


def test_band_specs():
    assert [b.name for b in SENTINEL2_L1C][8] == "B8A" and len(SENTINEL2_L1C) == 13
    assert "B10" not in [b.name for b in SENTINEL2_L2A] and len(SENTINEL2_L2A) == 12
    assert band_spec("B11").gsd_m == 20 and band_spec("VH").unit == "sigma0 dB"
    with pytest.raises(BandError, match="known bands"):
        band_spec("B13")


@pytest.mark.parametrize("baseline", ["04.00", "N0400", 4.0, "05.09"])
def test_processing_baseline_offset_removed(baseline):
    dn = np.array([0, 500, 1000, 1500, 11000], dtype=np.uint16)
    out = harmonize_s2_dn(dn, baseline)
    np.testing.assert_array_equal(out, [0, 1, 1, 500, 10000])
    assert out.dtype == np.uint16


@pytest.mark.parametrize("baseline", [None, "02.04", "N0301", 3.0])
def test_old_baselines_unchanged(baseline):
    dn = np.array([0, 500, 1500], dtype=np.uint16)
    np.testing.assert_array_equal(harmonize_s2_dn(dn, baseline), dn)


def test_geotiff_round_trip_keeps_crs_transform_names_nodata(tmp_path):
    r = make_raster(height=70, width=90)
    p = write_cog(r, tmp_path / "r.tif")
    back = read_raster(p)
    assert back.crs == r.crs
    assert back.transform.almost_equals(r.transform)
    assert back.band_names == r.band_names
    assert back.nodata == 0
    np.testing.assert_array_equal(back.data, r.data)
    with rasterio.open(p) as ds:
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"


def test_read_subset_by_name_and_window(tmp_path):
    from rasterio.windows import Window

    r = make_raster(height=64, width=64)
    p = write_cog(r, tmp_path / "r.tif")
    part = read_raster(p, ["B8", "B4"], Window(10, 20, 16, 8))
    assert part.data.shape == (2, 8, 16)
    np.testing.assert_array_equal(part.data[0], r.data[6, 20:28, 10:26])
    assert part.transform.c == r.transform.c + 10 * 10 and part.transform.f == r.transform.f - 20 * 10
    with pytest.raises(BandError, match="B1"):
        read_raster(p, ["B1"])


def test_corrupt_and_missing_geotiff_raise_clear_errors(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(RasterReadError, match="corrupt"):
        read_raster(bad)
    with pytest.raises(RasterReadError, match="does not exist"):
        read_raster(tmp_path / "nope.tif")
    truncated = tmp_path / "trunc.tif"
    truncated.write_bytes(write_cog(make_raster(), tmp_path / "ok.tif").read_bytes()[:3000])
    with pytest.raises(RasterReadError):
        read_raster(truncated)


def test_require_crs(tmp_path):
    p = write_cog(make_raster(crs=None), tmp_path / "nocrs.tif")
    assert read_raster(p).crs is None
    with pytest.raises(RasterReadError, match="no CRS"):
        read_raster(p, require_crs=True)


def test_class_map_cog_has_colour_table(tmp_path):
    from core.classes import DYNAMIC_WORLD
    from core.io.raster import GeoRaster

    base = make_raster(height=40, width=40)
    lab = GeoRaster(np.zeros((1, 40, 40), np.uint8), base.crs, base.transform, 255, ("class",))
    data = cog_bytes(lab, colormap=DYNAMIC_WORLD.colormap())
    p = tmp_path / "c.tif"
    p.write_bytes(data)
    with rasterio.open(p) as ds:
        assert ds.colormap(1)[0][:3] == (0x41, 0x9B, 0xDF)
        assert ds.crs == base.crs


def test_valid_mask_and_pixel_area():
    r = make_raster(height=10, width=10)
    r.data[2, 3, 4] = 0
    m = r.valid_mask()
    assert not m[3, 4] and m.sum() == 99
    np.testing.assert_allclose(r.pixel_area_m2(), 100.0)


def test_pixel_area_geographic_grid():
    from affine import Affine
    from rasterio.crs import CRS

    from core.io.raster import pixel_area_m2

    # 8.983e-5 deg pixels at 38 N (the Sen1Floods11 grid): about 7.9 m x 10 m
    a = pixel_area_m2(CRS.from_epsg(4326), Affine(8.983152841195215e-05, 0, -0.78, 0, -8.983152841195215e-05, 38.13), 2, 2)
    assert 77 < a[0] < 80


def test_stack_bands_mixes_sources_by_name_and_checks_the_grid():
    from dataclasses import replace

    from core.errors import GridMismatchError
    from core.io.raster import stack_bands

    s2 = make_raster(height=8, width=8, bands=["B4", "B8"])
    s2.data[:, 0, 0] = 0
    s1 = replace(make_raster(height=8, width=8, bands=["VV", "VH"]), nodata=None)
    out = stack_bands([s2, s1.to_float()], ["VV", "B8"])
    assert out.band_names == ("VV", "B8") and out.data.dtype == np.float32 and np.isnan(out.nodata)
    assert np.isnan(out.data[1, 0, 0]) and not np.isnan(out.data[0, 0, 0])
    with pytest.raises(BandError, match="B2"):
        stack_bands([s2, s1], ["B2"])
    with pytest.raises(GridMismatchError):
        stack_bands([s2, make_raster(height=9, width=8, bands=["VV"])], ["VV"])
