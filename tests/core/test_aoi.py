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
