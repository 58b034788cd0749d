"""Uploads as users download them: the Explore page reads a zipped Sentinel-2 SAFE product (issue 24)."""

from __future__ import annotations

from pathlib import Path

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


# Bad uploads (issue 22): judged from the header before any pixel is read, with one sentence naming the user's file,
# saved only under a generated id in the upload's own temporary folder.

import tempfile  # noqa: E402

import rasterio  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from core.io.guards import IncompleteFileError, SizeLimitError, UploadNameError  # noqa: E402

PROFILE = {"driver": "GTiff", "crs": "EPSG:32633", "transform": from_origin(300000, 5800000, 10, 10)}


def _geotiff(path, bands=4, size=512, **kw) -> bytes:
    """A GeoTIFF whose directory (header) comes before its pixel data (GDAL's layout when no metadata is added)."""
    with rasterio.open(path, "w", width=size, height=size, count=bands, dtype="uint16", **PROFILE, **kw) as dst:
        dst.write(np.random.default_rng(0).integers(300, 4000, (bands, size, size), dtype=np.uint16))
    return path.read_bytes()


def test_a_tiny_deflate_file_of_a_huge_constant_raster_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.tif"
    with rasterio.open(bomb, "w", width=5000, height=5000, count=13, dtype="float64", compress="deflate", tiled=True,
                       blockxsize=512, blockysize=512, sparse_ok=True, **PROFILE) as dst:
        dst.write(np.full((13, 512, 512), 1000.0), window=rasterio.windows.Window(0, 0, 512, 512))  # the rest reads as 0
    data = bomb.read_bytes()
    assert len(data) < 200_000  # 25 Mpx x 13 float64 bands (2.4 GB) in a few KB: within the pixel limit
    import core.io.raster

    monkeypatch.setattr(core.io.raster, "read_raster", lambda *a, **k: pytest.fail("pixels were read"))
    with pytest.raises(SizeLimitError) as caught:
        load_upload("bomb.tif", data)
    msg = str(caught.value)
    assert msg.startswith("bomb.tif would take 2.4 GB of memory") and "5,000 x 5,000" in msg and "float64" in msg
    assert "the limit is 1.0 GB" in msg and "upload-" not in msg


@pytest.mark.parametrize("layout", [{}, {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}],
                         ids=["strips", "deflate-tiles"])
def test_a_tiff_with_a_whole_header_and_cut_off_pixels_says_so(tmp_path, layout):
    data = _geotiff(tmp_path / "whole.tif", **layout)
    assert load_upload("scene.tif", data).data.shape == (4, 512, 512)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) * 2 // 3])
    from core.io.raster import raster_info

    assert raster_info(cut)["width"] == 512  # the header is whole
    with pytest.raises(IncompleteFileError) as caught:
        load_upload("scene.tif", cut.read_bytes())
    msg = str(caught.value)
    assert msg.startswith("scene.tif is incomplete: its header is whole") and "cut off" in msg and "upload-" not in msg


@pytest.mark.parametrize("name", ["../../evil.tif", "..", "a/b/../c.tif", "..\\..\\evil.tif", "/etc/evil.tif", "evil\x00.tif"])
def test_a_name_with_a_path_is_refused_and_nothing_is_written_outside_the_uploads_folder(tmp_path, monkeypatch, name):
    data = _geotiff(tmp_path / "src.tif")
    (tmp_path / "src.tif").unlink()
    work, temp = tmp_path / "cwd" / "a" / "b", tmp_path / "tmp"
    work.mkdir(parents=True)
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(UploadNameError) as caught:
        load_upload(name, data)
    assert "not a plain file name" in str(caught.value) and "rename the file" in str(caught.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_an_upload_is_saved_under_a_generated_id_and_removed_after_reading(tmp_path, monkeypatch):
    import core.io.raster

    data = _geotiff(tmp_path / "src.tif")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    seen = []
    real = core.io.raster.raster_info
    monkeypatch.setattr(core.io.raster, "raster_info", lambda p: (seen.append(Path(p)), real(p))[1])
    r = load_upload("my scene.tif", data)
    assert r.meta["name"] == "my scene.tif"
    (saved,) = seen
    assert saved.parent.parent == temp and saved.parent.name.startswith("lulc-upload-")
    assert saved.name.startswith("upload-") and len(saved.stem) == len("upload-") + 32 and "scene" not in saved.name
    assert list(temp.iterdir()) == []  # the temporary folder went with the read
