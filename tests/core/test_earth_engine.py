"""The Earth Engine source against a fake at our adapter boundary (no network, no credentials)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from core.sources import earth_engine as gee
from core.sources.earth_engine import (
    CollectionSpec,
    CredentialsError,
    EarthEngineConfig,
    EarthEngineError,
    LiveEarthEngine,
    PermissionDeniedError,
    PixelGrid,
    QuotaError,
    TransientError,
    classify_error,
    download,
    dynamic_world_spec,
    sentinel1_spec,
    sentinel2_spec,
    split_grid,
    utm_grid,
    worldcover_spec,
)

BRANDENBURG = (12.494241, 52.452931, 12.724006, 52.526485)


class FakeEarthEngine:
    """Recorded-response fake: pixel value = 1000 + global column + 10 * band (uint16)."""

    def __init__(self, fail: dict | None = None):
        self.calls: list[PixelGrid] = []
        self.fail = dict(fail or {})  # (translateX, translateY) -> list of exceptions to raise first
        self.lock = threading.Lock()

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:
        key = (grid.transform[2], grid.transform[5])
        with self.lock:
            self.calls.append(grid)
            queue = self.fail.get(key) or self.fail.get("any")
            if queue:
                raise queue.pop(0)
        col0 = round((grid.transform[2] - 330000) / 10)
        cols = np.arange(col0, col0 + grid.width)
        band = np.stack([np.broadcast_to(1000 + cols + 10 * b, (grid.height, grid.width)) for b in range(len(spec.bands))])
        return band.astype(spec.dtype)


GRID = PixelGrid("EPSG:32633", (10.0, 0.0, 330000.0, 0.0, -10.0, 5822040.0), 2500, 1800)
SPEC = sentinel2_spec("2021-06-01", "2021-09-01", ["B2", "B3", "B4"])


def test_tiled_download_reassembles_one_georeferenced_raster():
    fake = FakeEarthEngine()
    seen = []
    r = download(fake, SPEC, GRID, max_side=1024, sleep=lambda s: None, progress=lambda d, t: seen.append((d, t)))
    assert len(fake.calls) == 6 and seen[-1] == (6, 6)
    assert r.data.shape == (3, 1800, 2500) and r.band_names == ("B2", "B3", "B4")
    assert r.crs.to_epsg() == 32633 and r.transform.c == 330000 and r.transform.a == 10
    np.testing.assert_array_equal(r.data[0, 1234], 1000 + np.arange(2500))
    np.testing.assert_array_equal(r.data[2, :, 7], 1000 + 7 + 20)
    assert all(g.width <= 1024 and g.height <= 1024 for g in fake.calls)


def test_retry_with_backoff_after_a_transient_error():
    sleeps = []
    fake = FakeEarthEngine(fail={(330000.0, 5822040.0): [TransientError("Too many concurrent aggregations"), TransientError("503")]})
    r = download(fake, SPEC, PixelGrid(GRID.crs, GRID.transform, 300, 200), sleep=sleeps.append, backoff_s=0.5)
    assert sleeps == [0.5, 1.0] and len(fake.calls) == 3
    assert r.data[0, 0, 0] == 1000


def test_gives_up_after_retries_and_reports_quota_and_permission():
    fake = FakeEarthEngine(fail={"any": [TransientError("timed out")] * 10})
    with pytest.raises(TransientError):
        download(fake, SPEC, PixelGrid(GRID.crs, GRID.transform, 100, 100), retries=2, sleep=lambda s: None)
    assert len(fake.calls) == 3
    quota = FakeEarthEngine(fail={"any": [classify_error("Quota exceeded: too many requests (429)")]})
    with pytest.raises(QuotaError, match="quota"):
        download(quota, SPEC, PixelGrid(GRID.crs, GRID.transform, 100, 100), sleep=lambda s: None)
    assert len(quota.calls) == 1, "a quota error is not retried"
    denied = FakeEarthEngine(fail={"any": [classify_error("Permission denied on project x (403)")]})
    with pytest.raises(PermissionDeniedError, match="Resource Viewer"):
        download(denied, SPEC, PixelGrid(GRID.crs, GRID.transform, 100, 100), sleep=lambda s: None)


def test_disk_cache_makes_a_repeated_request_free(tmp_path):
    fake = FakeEarthEngine()
    small = PixelGrid(GRID.crs, GRID.transform, 300, 200)
    a = download(fake, SPEC, small, cache_dir=tmp_path, sleep=lambda s: None)
    n = len(fake.calls)
    b = download(fake, SPEC, small, cache_dir=tmp_path, sleep=lambda s: None)
    assert len(fake.calls) == n
    np.testing.assert_array_equal(a.data, b.data)
    assert b.crs == a.crs and b.transform == a.transform and b.band_names == a.band_names
    download(fake, sentinel2_spec("2021-06-01", "2021-09-02", ["B2", "B3", "B4"]), small, cache_dir=tmp_path, sleep=lambda s: None)
    assert len(fake.calls) > n, "other dates are another request"


def test_too_large_aoi_is_refused_before_any_request():
    fake = FakeEarthEngine()
    with pytest.raises(EarthEngineError, match="smaller area"):
        download(fake, SPEC, PixelGrid(GRID.crs, GRID.transform, 10000, 10000))
    assert not fake.calls


def test_missing_credentials_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("EE_CONFIG_DIR", str(tmp_path))
    for var in ("EARTHENGINE_PROJECT", "EARTHENGINE_SERVICE_ACCOUNT_KEY", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    cfg = EarthEngineConfig.from_env()
    assert not cfg.configured
    live = LiveEarthEngine(cfg)  # building it needs nothing
    with pytest.raises(CredentialsError, match="EARTHENGINE_PROJECT") as e:
        live.compute_pixels(SPEC, GRID)
    assert "earthengine authenticate" in str(e.value)
    key = tmp_path / "missing.json"
    cfg = EarthEngineConfig(project="p", service_account_key=str(key))
    assert any("does not exist" in p for p in cfg.problems())
    assert EarthEngineConfig.from_env({"earthengine": {"project": "from-secrets"}}).project == "from-secrets"


def test_sentinel2_spec_collections_filters_bands():
    s = sentinel2_spec("2021-06-01", "2021-09-01", ["B2", "B8", "B11"], level="L1C")
    assert s.collection == "COPERNICUS/S2_HARMONIZED" and s.bands == ("B2", "B8", "B11")
    assert s.filters == (("CLOUDY_PIXEL_PERCENTAGE", "lte", 60.0),)
    assert s.cloud_mask == "cloud_score_plus" and s.cloud_threshold == 0.6 and s.reducer == "median"
    assert s.dtype == "uint16" and s.nodata == 0 and s.resampling == "bilinear"
    l2a = sentinel2_spec("2021-06-01", "2021-09-01", ["B2"], level="L2A", cloud_mask="s2cloudless")
    assert l2a.collection == "COPERNICUS/S2_SR_HARMONIZED" and l2a.cloud_threshold == 40.0
    with pytest.raises(EarthEngineError, match="B10"):
        sentinel2_spec("2021-06-01", "2021-09-01", ["B10"], level="L2A")


def test_sentinel1_and_label_specs():
    s1 = sentinel1_spec("2021-06-01", "2021-09-01", orbit="ASCENDING")
    assert s1.collection == "COPERNICUS/S1_GRD" and s1.bands == ("VV", "VH") and s1.dtype == "float32"
    assert ("instrumentMode", "eq", "IW") in s1.filters and ("orbitProperties_pass", "eq", "ASCENDING") in s1.filters
    assert ("transmitterReceiverPolarisation", "contains", "VH") in s1.filters
    dw = dynamic_world_spec("2021-06-01", "2021-09-01")
    assert dw.collection == "GOOGLE/DYNAMICWORLD/V1" and dw.bands == ("label",) and dw.reducer == "mode" and dw.resampling == "nearest"
    wc = worldcover_spec()
    assert wc.collection == "ESA/WorldCover/v200" and wc.bands == ("Map",) and wc.nodata == 0
    with pytest.raises(EarthEngineError):
        sentinel1_spec("2021-06-01", "2021-09-01", orbit="SIDEWAYS")


def test_utm_grid_and_request_grid():
    g = utm_grid(BRANDENBURG)
    assert g.crs == "EPSG:32633" and g.transform[0] == 10 and g.transform[4] == -10
    assert g.transform[2] % 10 == 0 and g.transform[5] % 10 == 0
    assert 1500 < g.width < 1700 and 800 < g.height < 900
    req = g.to_request()
    assert req["crsCode"] == "EPSG:32633" and req["affineTransform"]["scaleX"] == 10 and req["dimensions"]["width"] == g.width
    assert utm_grid((-47.1, -15.9, -47.0, -15.8)).crs == "EPSG:32723"


def test_split_grid_respects_the_request_byte_limit():
    tiles = split_grid(PixelGrid("EPSG:32633", (10, 0, 0, 0, -10, 0), 5000, 3000), bands=13, bytes_per_pixel=2,
                       max_bytes=gee.MAX_REQUEST_BYTES, max_side=32768)
    assert all(t.width * t.height * 13 * 2 <= gee.MAX_REQUEST_BYTES for _, _, t in tiles)
    assert sum(t.width * t.height for _, _, t in tiles) == 5000 * 3000


def test_classify_error():
    assert isinstance(classify_error("Computation timed out."), TransientError)
    assert isinstance(classify_error("Too many concurrent aggregations."), TransientError)
    assert type(classify_error("Image.load: Asset not found")) is EarthEngineError


@pytest.mark.network
@pytest.mark.skipif(not EarthEngineConfig.from_env().configured, reason="needs Earth Engine credentials and EARTHENGINE_PROJECT")
def test_live_earth_engine_small_aoi(tmp_path):
    live = LiveEarthEngine()
    grid = utm_grid((12.60, 52.48, 12.61, 52.487))
    img = download(live, sentinel2_spec("2021-06-01", "2021-09-01", ["B2", "B3", "B4", "B8"]), grid, cache_dir=tmp_path)
    assert img.data.shape == (4, grid.height, grid.width) and 0 < np.median(img.data[3]) < 10000
    lab = download(live, dynamic_world_spec("2021-06-01", "2021-09-01"), grid)
    assert set(np.unique(lab.data)) <= set(range(9)) | {255}
    assert os.environ.get("EARTHENGINE_PROJECT")
