"""AOIs: GeoJSON parsing, validation, placement on a raster grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from core.aoi import bbox_geometry, geodesic_area_km2, locate_aoi, parse_geojson
from core.errors import AOIError

UTM = CRS.from_epsg(32633)
T = Affine(10, 0, 330000, 0, -10, 5822040)  # the Brandenburg grid, 768 x 1536


def test_parse_feature_collection_and_geometry():
    poly = {"type": "Polygon", "coordinates": [[[12.55, 52.47], [12.6, 52.47], [12.6, 52.5], [12.55, 52.5], [12.55, 52.47]]]}
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": poly, "properties": {}}]}
    assert parse_geojson(json.dumps(fc)).equals(parse_geojson(poly))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("{oops", "not valid JSON"),
        ({"type": "Point", "coordinates": [12.5, 52.5]}, "polygon"),
        ({"type": "Polygon", "coordinates": [[[12.55, 52.47], [12.6, 52.5], [12.6, 52.47], [12.55, 52.5], [12.55, 52.47]]]}, "invalid"),
        ({"type": "Polygon", "coordinates": [[[330000, 5800000], [331000, 5800000], [331000, 5801000], [330000, 5800000]]]}, "degrees"),
        ({"features": []}, "not GeoJSON"),
    ],
)
def test_bad_geojson(obj, message):
    with pytest.raises(AOIError, match=message):
        parse_geojson(obj)


def test_bbox_validation():
    with pytest.raises(AOIError, match="west < east"):
        bbox_geometry(12.6, 52.4, 12.5, 52.5)
    assert geodesic_area_km2(bbox_geometry(0, 0, 0.01, 0.01)) == pytest.approx(1.2308, rel=1e-3)


def test_locate_aoi_window_mask_and_area():
    aoi = locate_aoi(bbox_geometry(12.56, 52.465, 12.633, 52.51), UTM, T, 768, 1536)
    w = aoi.window
    assert 0 <= w.row_off and w.row_off + w.height <= 768 and 0 <= w.col_off and w.col_off + w.width <= 1536
    assert aoi.mask.shape == (w.height, w.width) and aoi.mask.mean() > 0.9
    assert aoi.area_km2 == pytest.approx(aoi.mask.sum() * 100 / 1e6, rel=0.03)


def test_aoi_partly_outside_is_clipped_and_fully_outside_rejected():
    aoi = locate_aoi(bbox_geometry(12.40, 52.44, 12.52, 52.48), UTM, T, 768, 1536)
    assert aoi.window.col_off == 0 and aoi.area_km2 < geodesic_area_km2(bbox_geometry(12.40, 52.44, 12.52, 52.48))
    with pytest.raises(AOIError, match="outside the data"):
        locate_aoi(bbox_geometry(0.1, 0.1, 0.2, 0.2), UTM, T, 768, 1536)
    with pytest.raises(AOIError, match="limit is 5 km"):
        locate_aoi(bbox_geometry(12.5, 52.45, 12.7, 52.52), UTM, T, 768, 1536, max_area_km2=5)
    with pytest.raises(AOIError, match="no georeference"):
        locate_aoi(bbox_geometry(12.5, 52.45, 12.7, 52.52), None, T, 768, 1536)


def test_polygon_mask_follows_the_shape():
    tri = {"type": "Polygon", "coordinates": [[[12.56, 52.47], [12.62, 52.47], [12.56, 52.50], [12.56, 52.47]]]}
    aoi = locate_aoi(parse_geojson(tri), UTM, T, 768, 1536)
    assert 0.4 < aoi.mask.mean() < 0.6
    assert aoi.mask[300, 80] and not aoi.mask[40, 300]  # the lower-left half
    assert np.isclose(aoi.area_km2, aoi.mask.sum() * 100 / 1e6, rtol=0.05)


def test_aoi_edges_of_constant_latitude_follow_the_parallel():
    """A 10-degree-wide box at 60 N on a LAEA grid: its north edge is a curve there, not the chord."""
    from pyproj import Transformer

    box = bbox_geometry(5.0, 60.40, 15.0, 60.45)
    tr = Transformer.from_crs(4326, 3035, always_xy=True)
    lons = np.linspace(5, 15, 50)
    xs, ys = tr.transform(np.r_[lons, lons], np.r_[np.full(50, 60.40), np.full(50, 60.45)])
    x0, y0 = float(min(xs)) // 100 * 100 - 1000, float(max(ys)) // 100 * 100 + 1000
    t = Affine(100, 0, x0, 0, -100, y0)
    a = locate_aoi(box, CRS.from_epsg(3035), t, int((y0 - min(ys)) / 100) + 20, int((max(xs) - x0) / 100) + 20, max_area_km2=1e6)
    c, r = ~t * tr.transform(10.0, 60.449)  # 110 m inside the north edge, half-way along it
    r, c = int(r) - int(a.window.row_off), int(c) - int(a.window.col_off)
    assert 0 <= r < a.mask.shape[0] and a.mask[r, c]


def test_pixel_areas_are_geodesic_in_web_mercator():
    from core.io.raster import grid_area_km2, pixel_area_m2

    t = Affine(10, 0, 1400000, 0, -10, 6890000)  # Web Mercator near 52.5 N: 10 m map pixels are ~6 m on the ground
    area = pixel_area_m2(CRS.from_epsg(3857), t, 2, 2)
    lat = np.degrees(2 * np.arctan(np.exp(6889995 / 6378137.0)) - np.pi / 2)
    np.testing.assert_allclose(area, 100 * np.cos(np.radians(lat)) ** 2, rtol=5e-3)
    assert grid_area_km2(CRS.from_epsg(3857), t, 1000, 1000) < 0.5 * 100  # the AOI limit sees ~37 km^2, not 100
