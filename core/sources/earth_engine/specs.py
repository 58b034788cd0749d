"""Earth Engine requests as plain data: collection specs and pixel grids (no ``ee``, no network).

A :class:`CollectionSpec` says which collection, which date and metadata filters, bands, cloud
masking, reducer and dtype; a :class:`PixelGrid` says on which grid. Builders such as
:func:`sentinel2_spec` and :func:`utm_grid` produce them; they are checked in tests without a network.

Collections (Earth Engine data catalog): ``COPERNICUS/S2_HARMONIZED`` (L1C) and
``COPERNICUS/S2_SR_HARMONIZED`` (L2A), whose "harmonized" DNs already have the +1000 offset of
processing baseline 04.00 removed; ``GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED`` (Pasquarella et al.
2023, band ``cs_cdf``: 1 = clear) or ``COPERNICUS/S2_CLOUD_PROBABILITY`` (s2cloudless, band
``probability`` in %); ``COPERNICUS/S1_GRD`` (sigma0 in dB, IW mode); ``GOOGLE/DYNAMICWORLD/V1``
(band ``label``) and ``ESA/WorldCover/v200`` (band ``Map``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from affine import Affine

from core.io.raster import GeoRaster
from core.sources.earth_engine.config import EarthEngineError

__all__ = [
    "CollectionSpec", "PixelGrid", "sentinel2_spec", "sentinel1_spec", "dynamic_world_spec", "worldcover_spec", "utm_grid",
    "check_dates", "exclusive_end", "fill_value", "model_level", "input_decision", "FLOAT_SENTINEL",
    "S2_L1C", "S2_L2A", "CLOUD_SCORE_PLUS", "S2_CLOUDLESS", "S1_GRD", "DYNAMIC_WORLD", "WORLDCOVER",
]

FLOAT_SENTINEL = -9999.0
"""Stand-in for masked pixels of float composites in transit (becomes NaN on arrival)."""

S2_L1C = "COPERNICUS/S2_HARMONIZED"
S2_L2A = "COPERNICUS/S2_SR_HARMONIZED"
CLOUD_SCORE_PLUS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
S2_CLOUDLESS = "COPERNICUS/S2_CLOUD_PROBABILITY"
S1_GRD = "COPERNICUS/S1_GRD"
DYNAMIC_WORLD = "GOOGLE/DYNAMICWORLD/V1"
WORLDCOVER = "ESA/WorldCover/v200"


@dataclass(frozen=True)
class CollectionSpec:
    """A request for one composite, as plain data.

    Attributes:
        collection: Earth Engine collection or image id.
        bands: Bands to return, in order.
        start: First date (ISO, inclusive); ``None`` for single images.
        end: Last date (ISO, inclusive, as a date widget gives it); the ``filterDate`` end sent to
            Earth Engine is the day after (:func:`exclusive_end`).
        filters: (property, operator, value) metadata filters; operators ``lt``, ``lte``, ``eq``,
            ``contains`` (``ee.Filter.listContains``).
        cloud_mask: ``None``, ``"cloud_score_plus"`` or ``"s2cloudless"``.
        cloud_threshold: Cloud Score+ ``cs_cdf`` minimum (clear >= it), or s2cloudless maximum
            probability in %.
        reducer: ``"median"``, ``"mode"`` or ``"first"``.
        resampling: ``"bilinear"`` for continuous bands, ``"nearest"`` for labels.
        dtype: numpy dtype of the returned pixels.
        nodata: Value for masked pixels in the returned array (NaN for float specs). What Earth
            Engine writes for them is :func:`fill_value` (NaN cannot travel in an integer GeoTIFF
            or in JSON).
    """

    collection: str
    bands: tuple[str, ...]
    start: str | None = None
    end: str | None = None
    filters: tuple[tuple[str, str, object], ...] = ()
    cloud_mask: str | None = None
    cloud_threshold: float | None = None
    reducer: str = "median"
    resampling: str = "bilinear"
    dtype: str = "uint16"
    nodata: float = 0

    def key(self) -> str:
        """Stable hash of the request (for the disk cache; the end date is inclusive since key version 2)."""
        return hashlib.sha256(json.dumps({**asdict(self), "_v": 2}, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def title(self) -> str:
        """Short name of the product for messages."""
        names = {S2_L1C: "Sentinel-2 L1C", S2_L2A: "Sentinel-2 L2A", S1_GRD: "Sentinel-1 GRD", DYNAMIC_WORLD: "Dynamic World",
                 WORLDCOVER: "ESA WorldCover"}
        return names.get(self.collection, self.collection)


def _date(value: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise EarthEngineError(f"the {what} date {value!r} is not an ISO date (YYYY-MM-DD)") from None


def check_dates(start: str, end: str) -> None:
    """Refuse unreadable dates and an end before the start.

    Raises:
        EarthEngineError: With the dates in the message.
    """
    if _date(end, "end") < _date(start, "start"):
        raise EarthEngineError(f"the end date {end} is before the start date {start}")


def exclusive_end(end: str) -> str:
    """The ``filterDate`` end for an inclusive last date: the day after ``end`` (ISO).

    ``ee.ImageCollection.filterDate(start, end)`` keeps images with ``start <= time < end``
    (Earth Engine API reference), so a last day chosen in a date widget needs ``end + 1 day``.
    """
    return (_date(end, "end") + dt.timedelta(days=1)).isoformat()


def fill_value(spec: CollectionSpec) -> float:
    """The value Earth Engine writes for masked pixels of ``spec`` (``unmask`` and GeoTIFF ``noData``).

    ``spec.nodata``, except for float specs whose NaN nodata travels as :data:`FLOAT_SENTINEL`
    (-9999).
    """
    return FLOAT_SENTINEL if math.isnan(float(spec.nodata)) else float(spec.nodata)


def model_level(card) -> str:
    """The Sentinel-2 processing level to request for a model: the first L1C/L2A level of its card.

    Cards without ``levels`` fall back to ``training.level`` (``"L2A"``), else ``"L1C"``.
    """
    levels = [lv for lv in getattr(card, "levels", ()) or () if lv in ("L1C", "L2A")]
    return levels[0] if levels else "L2A" if (getattr(card, "training", {}) or {}).get("level") == "L2A" else "L1C"


def input_decision(raster: GeoRaster, card, level: str, what: str = "the Earth Engine image"):
    """How Earth Engine Sentinel-2 pixels become model input (:func:`core.inputs.decision.decide_for_raster`).

    The ``*_HARMONIZED`` collections carry no +1000 offset, and the level is the collection's.

    Args:
        raster: uint16 (C, H, W) reflectance x 1e4 as :func:`download` returns it (a coarse
            sample is enough), band names set.
        card: The model card.
        level: ``"L1C"`` or ``"L2A"``: the collection requested.
        what: How to call the input in messages.

    Raises:
        BandError, InputError: See :func:`core.inputs.decision.decide`.
    """
    from core.inputs.decision import decide_for_raster

    return decide_for_raster(raster, card, level=level, level_reason=f"Earth Engine {level} collection",
                             metadata={"RADIOMETRIC_OFFSET": "none (Earth Engine *_HARMONIZED collection)"}, what=what)


def sentinel2_spec(start: str, end: str, bands: Sequence[str], *, level: str = "L1C", cloud_mask: str = "cloud_score_plus",
                   cloud_threshold: float | None = None, max_scene_cloud: float = 60.0) -> CollectionSpec:
    """Sentinel-2 median composite of clear pixels.

    Args:
        start: First date, ISO ``YYYY-MM-DD``.
        end: Last date, inclusive.
        bands: Band names (``B2`` ... ``B12``; ``B10`` only at L1C).
        level: ``"L1C"`` (TOA) or ``"L2A"`` (surface reflectance): match the model bundle.
        cloud_mask: ``"cloud_score_plus"`` (default), ``"s2cloudless"`` or ``None``.
        cloud_threshold: Cloud Score+ ``cs_cdf`` >= threshold is clear (default 0.6); s2cloudless
            probability < threshold % is clear (default 40).
        max_scene_cloud: Skip scenes whose ``CLOUDY_PIXEL_PERCENTAGE`` is above this.

    Raises:
        EarthEngineError: Unknown level or mask, a band the level lacks, or an end before the start.
    """
    check_dates(start, end)
    if level not in ("L1C", "L2A"):
        raise EarthEngineError(f"Sentinel-2 level must be L1C or L2A, got {level!r}")
    if level == "L2A" and "B10" in bands:
        raise EarthEngineError("Level-2A has no B10 (cirrus); choose L1C or drop B10")
    if cloud_mask not in (None, "cloud_score_plus", "s2cloudless"):
        raise EarthEngineError(f"cloud mask must be cloud_score_plus, s2cloudless or none, got {cloud_mask!r}")
    thr = cloud_threshold if cloud_threshold is not None else (0.6 if cloud_mask == "cloud_score_plus" else 40.0)
    return CollectionSpec(
        collection=S2_L1C if level == "L1C" else S2_L2A, bands=tuple(bands), start=start, end=end,
        filters=(("CLOUDY_PIXEL_PERCENTAGE", "lte", float(max_scene_cloud)),), cloud_mask=cloud_mask,
        cloud_threshold=thr if cloud_mask else None, reducer="median", resampling="bilinear", dtype="uint16", nodata=0,
    )


def sentinel1_spec(start: str, end: str, *, orbit: str = "DESCENDING") -> CollectionSpec:
    """Sentinel-1 IW GRD VV/VH median composite in dB for one orbit direction.

    ``start`` and ``end`` are inclusive ISO dates.

    Raises:
        EarthEngineError: Orbit not ``ASCENDING``/``DESCENDING``, or an end before the start.
    """
    check_dates(start, end)
    if orbit not in ("ASCENDING", "DESCENDING"):
        raise EarthEngineError(f"orbit must be ASCENDING or DESCENDING, got {orbit!r}")
    return CollectionSpec(
        collection=S1_GRD, bands=("VV", "VH"), start=start, end=end,
        filters=(("instrumentMode", "eq", "IW"), ("transmitterReceiverPolarisation", "contains", "VV"),
                 ("transmitterReceiverPolarisation", "contains", "VH"), ("orbitProperties_pass", "eq", orbit)),
        reducer="median", resampling="bilinear", dtype="float32", nodata=float("nan"),
    )


def dynamic_world_spec(start: str, end: str) -> CollectionSpec:
    """Dynamic World class label, the most frequent (mode) over the dates (inclusive); 255 where none."""
    check_dates(start, end)
    return CollectionSpec(collection=DYNAMIC_WORLD, bands=("label",), start=start, end=end, reducer="mode",
                          resampling="nearest", dtype="uint8", nodata=255)


def worldcover_spec() -> CollectionSpec:
    """ESA WorldCover 10 m v200 (2021) class map; 0 where none."""
    return CollectionSpec(collection=WORLDCOVER, bands=("Map",), reducer="first", resampling="nearest", dtype="uint8", nodata=0)


@dataclass(frozen=True)
class PixelGrid:
    """A north-up pixel grid: CRS code, affine transform, size."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    @property
    def affine(self) -> Affine:
        """The transform as an ``Affine``."""
        return Affine(*self.transform)

    def to_request(self) -> dict:
        """The ``grid`` field of a computePixels request."""
        a, b, c, d, e, f = self.transform
        return {"dimensions": {"width": self.width, "height": self.height},
                "affineTransform": {"scaleX": a, "shearX": b, "translateX": c, "shearY": d, "scaleY": e, "translateY": f},
                "crsCode": self.crs}

    def footprint(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the grid in its CRS units (north-up)."""
        a, _, c, _, e, f = self.transform
        return c, f + e * self.height, c + a * self.width, f

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the grid in degrees (WGS 84), rounded to 6 decimals."""
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(self.crs, "EPSG:4326", *self.footprint(), densify_pts=21)
        return round(w, 6), round(s, 6), round(e, 6), round(n, 6)


def utm_grid(bounds_lonlat: tuple[float, float, float, float], gsd_m: float = 10.0) -> PixelGrid:
    """A grid in the AOI's UTM zone (WGS 84) covering a lon/lat bounding box.

    The zone is that of the box's centre (zones 1-60, north ``EPSG:326zz``, south ``EPSG:327zz``);
    the origin is snapped to multiples of ``gsd_m`` so repeated requests share one grid.

    Args:
        bounds_lonlat: (west, south, east, north) in degrees.
        gsd_m: Pixel size in metres.
    """
    from rasterio.warp import transform_bounds

    w, s, e, n = bounds_lonlat
    lon, lat = (w + e) / 2, (s + n) / 2
    zone = int((lon + 180) // 6) % 60 + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", w, s, e, n, densify_pts=21)
    left = math.floor(left / gsd_m) * gsd_m
    top = math.ceil(top / gsd_m) * gsd_m
    width = max(1, math.ceil((right - left) / gsd_m))
    height = max(1, math.ceil((top - bottom) / gsd_m))
    return PixelGrid(f"EPSG:{epsg}", (gsd_m, 0.0, left, 0.0, -gsd_m, top), width, height)
