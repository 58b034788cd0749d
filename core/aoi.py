"""Areas of interest (AOI): parse, validate and place them on a raster grid.

An AOI arrives as GeoJSON (drawn on the map, pasted or uploaded) or as a bounding box in degrees
(WGS 84 longitude/latitude, as GeoJSON requires; RFC 7946). It is checked (a polygon, valid,
not self-intersecting, not too large), transformed to the raster's CRS, and turned into the pixel
window that covers it plus a mask of the pixels inside it.

Areas are geodesic, on the WGS 84 ellipsoid (pyproj ``Geod.geometry_area_perimeter``, Karney 2013).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from rasterio.windows import Window, from_bounds
from shapely import geometry as sg
from shapely.validation import explain_validity

from core.errors import AOIError

__all__ = ["AOI", "parse_geojson", "bbox_geometry", "locate_aoi", "geodesic_area_km2", "DEFAULT_MAX_AOI_KM2"]

DEFAULT_MAX_AOI_KM2 = 150.0
"""Largest AOI accepted by default (km^2): 1.5 million 10 m pixels, a few seconds of CPU inference."""

_GEOD = Geod(ellps="WGS84")

DENSIFY_DEG = 0.0005
"""Longest AOI edge segment (degrees, about 50 m) before reprojection: a straight edge in lon/lat
(e.g. a bounding box's constant-latitude side) is curved in a projected CRS such as UTM, so edges
are densified first (as ``rasterio.warp.transform_bounds`` does with ``densify_pts``)."""


@dataclass(frozen=True)
class AOI:
    """An AOI placed on a raster grid.

    Attributes:
        geometry: The AOI polygon in lon/lat degrees (shapely).
        window: Pixel window of the raster covering the AOI (clipped to the raster).
        mask: Bool (h, w) of that window: True inside the AOI.
        area_km2: Geodesic area of the AOI's part inside the raster footprint.
    """

    geometry: sg.base.BaseGeometry
    window: Window
    mask: np.ndarray
    area_km2: float


def geodesic_area_km2(geom: sg.base.BaseGeometry) -> float:
    """Area of a lon/lat geometry on the WGS 84 ellipsoid in km^2."""
    area, _ = _GEOD.geometry_area_perimeter(geom)
    return abs(area) / 1e6


def _polygonal(geom: sg.base.BaseGeometry) -> sg.base.BaseGeometry:
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise AOIError(f"the AOI must be a polygon or rectangle, got a {geom.geom_type}")
    if not geom.is_valid:
        raise AOIError(f"the AOI polygon is invalid ({explain_validity(geom)}); redraw it without crossing edges")
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise AOIError("AOI coordinates must be longitude/latitude in degrees (WGS 84, EPSG:4326)")
    if geom.area == 0:
        raise AOIError("the AOI has no area")
    return geom


def parse_geojson(obj: str | dict) -> sg.base.BaseGeometry:
    """Read an AOI from GeoJSON text or a parsed object.

    Accepts a Geometry, a Feature, or a FeatureCollection (its polygons are merged).

    Args:
        obj: GeoJSON text or dict, coordinates in lon/lat degrees.

    Returns:
        A valid shapely Polygon or MultiPolygon.

    Raises:
        AOIError: Not JSON, not GeoJSON, no polygon, self-intersecting, or not in degrees.
    """
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise AOIError(f"the AOI is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(obj, dict) or "type" not in obj:
        raise AOIError("the AOI is not GeoJSON (no 'type')")
    kind = obj["type"]
    try:
        if kind == "FeatureCollection":
            geoms = [sg.shape(f["geometry"]) for f in obj.get("features", []) if f.get("geometry")]
            if not geoms:
                raise AOIError("the FeatureCollection holds no geometry")
            polys = [_polygonal(g) for g in geoms]
            from shapely.ops import unary_union

            return _polygonal(unary_union(polys))
        if kind == "Feature":
            if not obj.get("geometry"):
                raise AOIError("the Feature has no geometry")
            return _polygonal(sg.shape(obj["geometry"]))
        return _polygonal(sg.shape(obj))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, AOIError):
            raise
        raise AOIError(f"the AOI GeoJSON could not be read: {exc}") from None


def bbox_geometry(west: float, south: float, east: float, north: float) -> sg.Polygon:
    """A rectangle from a bounding box in degrees.

    Raises:
        AOIError: West >= east, south >= north, or values outside longitude/latitude ranges.
    """
    if not (-180 <= west < east <= 180):
        raise AOIError(f"bounding box needs -180 <= west < east <= 180 (degrees), got west {west}, east {east}")
    if not (-90 <= south < north <= 90):
        raise AOIError(f"bounding box needs -90 <= south < north <= 90 (degrees), got south {south}, north {north}")
    return sg.box(west, south, east, north)


def parse_bbox(text: str) -> sg.Polygon:
    """A rectangle from ``"west, south, east, north"`` in degrees (commas or semicolons).

    Raises:
        AOIError: Not four numbers, or a box :func:`bbox_geometry` refuses.
    """
    try:
        parts = [float(v) for v in text.replace(";", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4:
        raise AOIError(f"type the bounding box as four numbers: west, south, east, north (degrees), got {text!r}")
    return bbox_geometry(*parts)


def locate_aoi(
    geom_lonlat: sg.base.BaseGeometry,
    crs: CRS | None,
    transform: Affine,
    height: int,
    width: int,
    *,
    max_area_km2: float = DEFAULT_MAX_AOI_KM2,
) -> AOI:
    """Place an AOI on a raster grid.

    Args:
        geom_lonlat: AOI polygon in lon/lat degrees.
        crs: The raster's CRS (``None`` rasters cannot take a map AOI).
        transform: The raster's affine transform.
        height: Raster rows.
        width: Raster columns.
        max_area_km2: Largest accepted AOI area (after clipping to the raster).

    Returns:
        The AOI with its pixel window and mask.

    Raises:
        AOIError: The raster has no georeference; the AOI does not overlap the raster; the
            overlap is larger than ``max_area_km2`` (the message gives both numbers) or smaller
            than one pixel.
    """
    if crs is None:
        raise AOIError("this scene has no georeference, so a map AOI cannot be placed on it; use the whole scene")
    geom_lonlat = _polygonal(geom_lonlat)
    # densify before reprojecting: an edge of constant latitude is a curve in UTM, not a chord
    native = sg.shape(transform_geom("EPSG:4326", crs, sg.mapping(shapely.segmentize(geom_lonlat, DENSIFY_DEG))))
    left, top = transform @ (0, 0)
    right, bottom = transform @ (width, height)
    footprint = sg.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    inside = native.intersection(footprint)
    if inside.is_empty or inside.area == 0:
        raise AOIError("the AOI lies outside the data: draw it over the scene footprint shown on the map")
    step = DENSIFY_DEG if CRS.from_user_input(crs).is_geographic else 10 * abs(transform.a)  # CRS units
    inside_lonlat = sg.shape(transform_geom(crs, "EPSG:4326", sg.mapping(shapely.segmentize(inside, step))))
    area = geodesic_area_km2(inside_lonlat)
    if area > max_area_km2:
        raise AOIError(f"the AOI covers {area:.1f} km^2 of data; the limit is {max_area_km2:.0f} km^2: draw a smaller area")
    win = from_bounds(*inside.bounds, transform=transform)
    win = win.round_offsets(op="floor").round_lengths(op="ceil")
    r0, c0 = max(0, int(win.row_off)), max(0, int(win.col_off))
    r1, c1 = min(height, int(win.row_off + win.height) + 1), min(width, int(win.col_off + win.width) + 1)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    from rasterio.windows import transform as window_transform

    mask = geometry_mask([sg.mapping(inside)], out_shape=(r1 - r0, c1 - c0), transform=window_transform(window, transform), invert=True)
    if not mask.any():
        raise AOIError("the AOI is smaller than one pixel of the data; draw a larger area")
    rows, cols = np.nonzero(mask)
    tight = Window(c0 + cols.min(), r0 + rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
    mask = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return AOI(geometry=inside_lonlat, window=tight, mask=mask, area_km2=area)
