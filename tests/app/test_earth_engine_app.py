"""The Explore page's Earth Engine extras: the dry run (no credentials) and Earth Engine tiles on the map."""

from __future__ import annotations

import folium
import pytest

from app import earth_engine, maps
from app.state import AppState
from core.errors import AOIError


def _state(**kw) -> AppState:
    s = AppState()
    s.aoi_mode = "Bounding box"
    s.bbox_text = "12.55, 52.47, 12.62, 52.51"
    s.ee_start, s.ee_end = "2021-07-01", "2021-07-01"
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_dry_run_lists_the_requests_of_run_model_without_credentials(monkeypatch, tmp_path):
    for var in ("EARTHENGINE_PROJECT", "EARTHENGINE_SERVICE_ACCOUNT_KEY", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EE_CONFIG_DIR", str(tmp_path))
    plan = earth_engine.dry_run(_state())
    cols = [p["collection"] for p in plan["products"]]
    assert cols[0] in ("COPERNICUS/S2_HARMONIZED", "COPERNICUS/S2_SR_HARMONIZED") and cols[-2:] == ["GOOGLE/DYNAMICWORLD/V1", "ESA/WorldCover/v200"]
    s2 = plan["products"][0]
    assert s2["dates"]["filterDate"] == ["2021-07-01", "2021-07-02"], "one chosen day is one day of images"
    assert s2["bands"] == [b for b in plan["model_bands"] if b not in ("VV", "VH")] and s2["cloud_threshold"] == 0.6
    assert plan["grid"]["crs"] == "EPSG:32633" and 400 < plan["grid"]["width"] < 520
    assert plan["bytes"] == sum(p["bytes"] for p in plan["products"]) > 0 and plan["requests"] >= 4
    with pytest.raises(AOIError, match="needs an AOI"):
        earth_engine.dry_run(_state(aoi_mode="Whole scene"))


def test_earth_engine_tiles_go_on_the_map():
    layer = folium.raster_layers.TileLayer(tiles="https://earthengine.googleapis.com/v1/projects/p/maps/abc/tiles/{z}/{x}/{y}",
                                           attr="Google Earth Engine", name="Earth Engine: Dynamic World (mode)", overlay=True)
    html = maps.build_map([], tile_layers=[layer]).get_root().render()
    assert "maps/abc/tiles/{z}/{x}/{y}" in html and "Earth Engine: Dynamic World" in html
    assert "maps/abc" not in maps.build_map([]).get_root().render(), "without layers nothing changes"
