"""The sample-pack source on the real scenes, and CRS/transform through tiled prediction."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from core.errors import BandError, SceneNotFoundError
from core.inference.streaming import NODATA_CLASS, predict_geotiff, predict_raster
from core.io.raster import read_raster
from core.sources.samples import get_scene, list_scenes, load_image, load_labels
from tests.conftest import S2_BANDS9, toy_policy

K = 3


def fake_model(x: np.ndarray) -> np.ndarray:
    """Per-pixel 'model': class from NIR/red ratio; probabilities from a softmax."""
    x = np.nan_to_num(x)
    z = np.stack([x[:, 0] / 1000, x[:, 1] / 1000, np.full_like(x[:, 0], 1.5)], axis=1)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_sample_pack_scenes(data_dir):
    scenes = {s.id: s for s in list_scenes(data_dir)}
    assert {"brandenburg-2017-02-16", "sen1floods11-spain-7370579", "dfc2020-roi0000-validation-p0"} <= set(scenes)
    b = scenes["brandenburg-2017-02-16"]
    assert (b.height, b.width) == (768, 1536) and b.georeferenced and not b.has_s1 and set(b.labels) == {"dw", "osm"}
    assert scenes["sen1floods11-spain-7370579"].has_s1


def test_load_s2_bands_by_name(data_dir):
    img = load_image("brandenburg-2017-02-16", ["B8", "B4"], Window(100, 50, 64, 32))
    assert img.data.shape == (2, 32, 64) and img.data.dtype == np.uint16 and img.nodata == 0
    assert img.crs.to_epsg() == 32633
    assert img.transform.c == 330000 + 100 * 10 and img.transform.f == 5822040 - 50 * 10
    with rasterio.open(get_scene("brandenburg-2017-02-16").path / "image_s2.tif") as ds:
        np.testing.assert_array_equal(img.data[0], ds.read(8, window=Window(100, 50, 64, 32)))


def test_load_s1_and_s2_together_as_float(data_dir):
    img = load_image("sen1floods11-spain-7370579", ["B4", "VV", "VH"])
    assert img.data.dtype == np.float32 and np.isnan(img.nodata) and img.band_names == ("B4", "VV", "VH")
    assert np.nanmedian(img.data[1]) < 0  # backscatter in dB
    assert img.crs.to_epsg() == 4326


def test_missing_band_and_scene_errors(data_dir):
    with pytest.raises(BandError, match="VV"):
        load_image("brandenburg-2017-02-16", ["B4", "VV"])
    with pytest.raises(SceneNotFoundError, match="brandenburg-2017-02-16"):
        get_scene("atlantis")
    with pytest.raises(SceneNotFoundError, match="dw, osm"):
        load_labels("brandenburg-2017-02-16", "water")


def test_scene_without_georeference_gets_local_metric_grid(data_dir):
    img = load_image("dfc2020-roi0000-validation-p0", ["B2"])
    assert img.crs is None and img.transform.a == 10 and not img.is_georeferenced
    lab, scheme = load_labels("dfc2020-roi0000-validation-p0", "dfc")
    assert scheme.name == "dfc2020" and lab.data.shape == (1, 256, 256)
    np.testing.assert_allclose(img.pixel_area_m2(), 100.0)


def test_predict_raster_keeps_grid_and_flags_nodata():
    from tests.conftest import make_raster

    r = make_raster(height=100, width=150)
    r.data[:, 0:4, 0:6] = 0
    out = predict_raster(r, fake_model, toy_policy(64, 16), bands=["B8", "B4"], num_classes=K)
    assert out.classes.crs == r.crs and out.classes.transform == r.transform
    assert out.classes.data.shape == (1, 100, 150) and out.classes.data.dtype == np.uint8
    assert (out.classes.data[0, :4, :6] == NODATA_CLASS).all() and (out.confidence.data[0, :4, :6] == 0).all()
    sel = r.select(["B8", "B4"]).data.astype(np.float32)
    expected = fake_model(sel[None])[0].argmax(0)
    np.testing.assert_array_equal(out.classes.data[0, 4:, 6:], expected[4:, 6:])


def test_predict_geotiff_preserves_crs_transform_and_writes_cog(small_tif, tmp_path):
    dst = tmp_path / "pred.tif"
    conf = tmp_path / "conf.tif"
    predict_geotiff(small_tif, dst, fake_model, toy_policy(64, 16), bands=["B8", "B4"], num_classes=K, class_ids=[10, 20, 30],
                    colormap={10: "#ff0000", 20: "#00ff00", 30: "#0000ff"}, confidence_path=conf)
    src = read_raster(small_tif)
    with rasterio.open(dst) as ds:
        assert ds.crs == src.crs and ds.transform.almost_equals(src.transform)
        assert ds.nodata == NODATA_CLASS and ds.dtypes[0] == "uint8"
        assert ds.colormap(1)[20][:3] == (0, 255, 0)
        cls = ds.read(1)
    assert set(np.unique(cls)) <= {10, 20, 30, NODATA_CLASS}
    assert (cls[:5, :7] == NODATA_CLASS).all()
    mem = predict_raster(src, fake_model, toy_policy(64, 16), bands=["B8", "B4"], num_classes=K, class_ids=[10, 20, 30])
    np.testing.assert_array_equal(cls, mem.classes.data[0])
    with rasterio.open(conf) as ds:
        c = ds.read(1)
        assert ds.dtypes[0] == "float32" and c.max() <= 1 and c[50, 50] > 1 / K


def test_predict_geotiff_missing_band(small_tif, tmp_path):
    with pytest.raises(BandError, match="VV"):
        predict_geotiff(small_tif, tmp_path / "o.tif", fake_model, toy_policy(), bands=["B4", "VV"], num_classes=K)


def test_nine_band_fixture(small_tif):
    assert read_raster(small_tif).band_names == tuple(S2_BANDS9)
