"""Google Earth Engine source: Sentinel-2/Sentinel-1 composites and reference labels for any AOI.

This is the only module that imports ``ee``, and it does so lazily inside :class:`LiveEarthEngine`:
nothing is initialised at import time, so the app and the tests run without credentials.

Two layers:

- **Requests** are plain data (:class:`CollectionSpec`, :class:`PixelGrid`): which collection, which
  filters, bands, masking, reducer, and on which pixel grid. Builders such as :func:`sentinel2_spec`
  produce them; they are checked in tests without a network.
- **The adapter** (:class:`EarthEngineAdapter`) turns one spec + one grid into pixels.
  :class:`LiveEarthEngine` does it with ``ee.data.computePixels``; tests substitute a fake at this
  boundary (recorded responses, transient errors, quota errors).

:func:`download` splits a grid into tiles under Earth Engine's request limits (48 MB of
uncompressed pixels and 32768 pixels per side per ``computePixels`` request; Earth Engine REST
reference, ``projects.image.computePixels``), fetches them in parallel with retries and
exponential backoff, reassembles one :class:`core.io.raster.GeoRaster`, and caches it on disk keyed by
the request, so a repeated request costs nothing.

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
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from core.errors import LulcError
from core.io.raster import GeoRaster, read_raster, stack_bands, write_cog

__all__ = [
    "EarthEngineError", "CredentialsError", "QuotaError", "PermissionDeniedError", "TransientError", "EmptyCollectionError",
    "EarthEngineConfig", "CollectionSpec", "PixelGrid", "EarthEngineAdapter", "LiveEarthEngine",
    "sentinel2_spec", "sentinel1_spec", "dynamic_world_spec", "worldcover_spec", "utm_grid", "split_grid", "download",
    "fetch_imagery", "classify_error", "classify_exception", "exclusive_end", "fill_value", "export_params",
    "describe_request", "describe_export", "empty_collection_message", "model_level", "input_decision",
    "MAX_REQUEST_BYTES", "MAX_REQUEST_SIDE",
]

MAX_REQUEST_BYTES = 48 * 2**20
"""computePixels limit on uncompressed pixels per request (bytes)."""
MAX_REQUEST_SIDE = 32768
"""computePixels limit on pixels per side."""
FLOAT_SENTINEL = -9999.0
"""Stand-in for masked pixels of float composites in transit (becomes NaN on arrival)."""

S2_L1C = "COPERNICUS/S2_HARMONIZED"
S2_L2A = "COPERNICUS/S2_SR_HARMONIZED"
CLOUD_SCORE_PLUS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
S2_CLOUDLESS = "COPERNICUS/S2_CLOUD_PROBABILITY"
S1_GRD = "COPERNICUS/S1_GRD"
DYNAMIC_WORLD = "GOOGLE/DYNAMICWORLD/V1"
WORLDCOVER = "ESA/WorldCover/v200"


class EarthEngineError(LulcError):
    """Any Earth Engine failure the user can act on."""


class CredentialsError(EarthEngineError):
    """No usable credentials or Cloud project."""


class QuotaError(EarthEngineError):
    """The project's Earth Engine quota or rate limit is exhausted."""


class PermissionDeniedError(EarthEngineError):
    """The credentials lack access to the project or the dataset."""


class TransientError(EarthEngineError):
    """A failure worth retrying (timeouts, 5xx, 'too many concurrent requests')."""


class EmptyCollectionError(EarthEngineError):
    """No image matches the dates, the AOI and the filters, so there is nothing to composite."""


@dataclass(frozen=True)
class EarthEngineConfig:
    """How to authenticate.

    Credentials are looked up in this order:

    1. a credentials JSON file named by ``[earthengine] service_account_key`` in Streamlit secrets,
       ``EARTHENGINE_SERVICE_ACCOUNT_KEY`` or ``GOOGLE_APPLICATION_CREDENTIALS``. It may hold a
       service-account key (``"type": "service_account"``) or application-default user credentials
       (``"type": "authorized_user"``, written by ``gcloud auth application-default login``);
    2. the credentials stored by ``earthengine authenticate`` (``~/.config/earthengine/credentials``,
       or ``$EE_CONFIG_DIR/credentials``);
    3. gcloud's application-default credentials file
       (``~/.config/gcloud/application_default_credentials.json``, or under ``$CLOUDSDK_CONFIG``).

    Attributes:
        project: Google Cloud project registered for Earth Engine (``EARTHENGINE_PROJECT``); when
            unset, the ``project_id`` or ``quota_project_id`` of the credentials file is used.
        service_account_key: Path of the credentials JSON file of step 1 (the name is historical:
            user credentials are accepted too); ``None`` goes on with steps 2 and 3.
    """

    project: str | None = None
    service_account_key: str | None = None

    @classmethod
    def from_env(cls, secrets: dict | None = None) -> EarthEngineConfig:
        """Read the configuration from Streamlit secrets (``[earthengine]`` table) or the environment."""
        s = (secrets or {}).get("earthengine", {}) if secrets else {}
        project = s.get("project") or os.environ.get("EARTHENGINE_PROJECT")
        key = s.get("service_account_key") or os.environ.get("EARTHENGINE_SERVICE_ACCOUNT_KEY") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        return cls(project=project, service_account_key=key)

    @property
    def user_credentials_path(self) -> Path:
        """Where ``earthengine authenticate`` stores the user's credentials."""
        return Path(os.environ.get("EE_CONFIG_DIR", Path.home() / ".config" / "earthengine")) / "credentials"

    @property
    def gcloud_adc_path(self) -> Path:
        """Where ``gcloud auth application-default login`` stores application-default credentials."""
        return Path(os.environ.get("CLOUDSDK_CONFIG", Path.home() / ".config" / "gcloud")) / "application_default_credentials.json"

    def credentials_file(self) -> Path | None:
        """The credentials JSON file to use (step 1 or 3 of the lookup), or ``None`` for step 2 or nothing."""
        if self.service_account_key:
            return Path(self.service_account_key)
        if not self.user_credentials_path.exists() and self.gcloud_adc_path.exists():
            return self.gcloud_adc_path
        return None

    def _file_info(self) -> tuple[dict | None, str | None]:
        """(parsed credentials file, problem) of :meth:`credentials_file`."""
        path = self.credentials_file()
        if path is None:
            return None, None
        if not path.exists():
            return None, f"the credentials file {path} does not exist"
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"the credentials file {path} is not readable JSON ({exc})"
        if not isinstance(info, dict):
            return None, f"the credentials file {path} is not a JSON object"
        need = {"service_account": ("client_email", "private_key"), "authorized_user": ("client_id", "client_secret", "refresh_token")}
        kind = info.get("type")
        if kind in need:
            missing = [k for k in need[kind] if not info.get(k)]
            if missing:
                return None, f"the {kind} credentials file {path} lacks {', '.join(missing)}"
        elif kind not in ("external_account", "impersonated_service_account"):
            return None, (f"the credentials file {path} has type {kind!r}; expected a service-account key or "
                          "application-default credentials (gcloud auth application-default login)")
        return info, None

    @property
    def effective_project(self) -> str | None:
        """``project``, else the project named in the credentials file."""
        if self.project:
            return self.project
        info, _ = self._file_info()
        return (info or {}).get("project_id") or (info or {}).get("quota_project_id") or None

    @property
    def credentials_source(self) -> str:
        """Which credentials would be used, in words."""
        path = self.credentials_file()
        if path is not None:
            info, _ = self._file_info()
            kind = (info or {}).get("type", "unknown")
            what = "service-account key" if kind == "service_account" else "application-default credentials"
            return f"{what} {path}"
        if self.user_credentials_path.exists():
            return f"earthengine authenticate credentials {self.user_credentials_path}"
        return "none"

    def problems(self) -> list[str]:
        """What is missing, in words a user can act on (empty when it looks usable)."""
        out = []
        info, problem = self._file_info()
        if problem:
            out.append(problem)
        if not self.effective_project:
            out.append("set EARTHENGINE_PROJECT (or [earthengine] project in .streamlit/secrets.toml) to a Cloud project registered for Earth Engine")
        if self.credentials_file() is None and not self.user_credentials_path.exists():
            out.append("no credentials: run `earthengine authenticate` once, or set GOOGLE_APPLICATION_CREDENTIALS (or "
                       "EARTHENGINE_SERVICE_ACCOUNT_KEY) to a service-account JSON key or to application-default credentials "
                       "from `gcloud auth application-default login`")
        return out

    @property
    def configured(self) -> bool:
        """True when credentials and a project are present (not yet verified with the server)."""
        return not self.problems()


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


def split_grid(grid: PixelGrid, bands: int, bytes_per_pixel: int, *, max_bytes: int = MAX_REQUEST_BYTES // 4, max_side: int = 1024) -> list[tuple[int, int, PixelGrid]]:
    """Cut a grid into request tiles under the size limits.

    Args:
        grid: The whole grid.
        bands: Bands per request.
        bytes_per_pixel: Bytes of one band value.
        max_bytes: Byte budget of one request (default a quarter of Earth Engine's 48 MB, which
            keeps responses quick and retries cheap).
        max_side: Largest tile side in pixels.

    Returns:
        (row_off, col_off, sub-grid) for each tile, row-major.
    """
    side = min(max_side, MAX_REQUEST_SIDE, int(math.sqrt(max_bytes / max(1, bands * bytes_per_pixel))))
    a, b, c, d, e, f = grid.transform
    tiles = []
    for r in range(0, grid.height, side):
        for col in range(0, grid.width, side):
            h, w = min(side, grid.height - r), min(side, grid.width - col)
            tiles.append((r, col, PixelGrid(grid.crs, (a, b, c + col * a, d, e, f + r * e), w, h)))
    return tiles


class EarthEngineAdapter(Protocol):
    """The boundary to Earth Engine: one spec and one grid in, pixels (C, H, W) out.

    Implementations raise :class:`TransientError`, :class:`QuotaError`,
    :class:`PermissionDeniedError` or :class:`CredentialsError` so that :func:`download` can retry
    or report. An adapter may also offer ``count_images(spec, grid) -> int`` (images left after the
    date, bounds and metadata filters); :func:`download` then refuses an empty collection with
    :func:`empty_collection_message` before asking for pixels.
    """

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:  # pragma: no cover - protocol
        """Pixels of ``spec`` on ``grid`` as ``spec.dtype`` (C, H, W)."""
        ...

    def export(self, spec: CollectionSpec, grid: PixelGrid, name: str, kind: str, destination: str) -> str:  # pragma: no cover
        """Start a batch export (``kind`` ``"gcs"`` or ``"drive"``) of ``spec`` on ``grid``; returns the task id."""
        ...


def _footprint(grid: PixelGrid) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a north-up grid in its CRS units."""
    a, _, c, _, e, f = grid.transform
    return c, f + e * grid.height, c + a * grid.width, f


def _lonlat_bounds(grid: PixelGrid) -> tuple[float, float, float, float]:
    from rasterio.warp import transform_bounds

    w, s, e, n = transform_bounds(grid.crs, "EPSG:4326", *_footprint(grid), densify_pts=21)
    return round(w, 6), round(s, 6), round(e, 6), round(n, 6)


def empty_collection_message(spec: CollectionSpec, grid: PixelGrid) -> str:
    """What to tell the user when no image matches: the dates, the AOI and the cloud limits."""
    w, s, e, n = _lonlat_bounds(grid)
    clouds = ""
    scene = [v for p, _, v in spec.filters if p == "CLOUDY_PIXEL_PERCENTAGE"]
    if scene:
        clouds += f" with at most {scene[0]:g} % cloudy pixels per scene"
    if spec.cloud_mask:
        name = "Cloud Score+ cs_cdf >=" if spec.cloud_mask == "cloud_score_plus" else "s2cloudless probability <"
        clouds += f" (cloud mask {name} {spec.cloud_threshold:g})"
    orbit = [v for p, _, v in spec.filters if p == "orbitProperties_pass"]
    if orbit:
        clouds += f" in {orbit[0].lower()} orbits"
    return (f"no {spec.title} images between {spec.start} and {spec.end} (both inclusive) over the AOI "
            f"(west {w}, south {s}, east {e}, north {n}){clouds}: widen the dates, raise the cloud limits or move the AOI")


def pixel_request(spec: CollectionSpec, grid: PixelGrid) -> dict:
    """The ``computePixels`` request body for one tile, without its ``expression``."""
    return {"fileFormat": "NUMPY_NDARRAY", "grid": grid.to_request(), "bandIds": list(spec.bands)}


def export_params(spec: CollectionSpec, grid: PixelGrid, name: str) -> dict:
    """Keyword arguments of ``ee.batch.Export.image.toCloudStorage``/``toDrive`` besides image and destination.

    The image is unmasked with :func:`fill_value` and the GeoTIFF declares it as ``noData``
    (``formatOptions.noData``, Earth Engine export guide), so masked pixels (clouds, no scene)
    arrive as nodata, not as 0 reflectance or -9999 dB. The grid is fixed by ``crs``,
    ``crsTransform`` and ``dimensions``.
    """
    return {"description": re.sub(r"[^A-Za-z0-9_,:;.-]", "_", name)[:100], "fileNamePrefix": name, "crs": grid.crs,
            "crsTransform": list(grid.transform), "dimensions": f"{grid.width}x{grid.height}", "fileFormat": "GeoTIFF",
            "formatOptions": {"noData": fill_value(spec)}, "maxPixels": int(grid.width * grid.height)}


def describe_request(spec: CollectionSpec, grid: PixelGrid, *, max_side: int = 1024) -> dict:
    """The requests :func:`download` would send for ``spec`` on ``grid``, as plain data (a dry run).

    Returns:
        JSON-ready dict: collection, date filter (inclusive dates and the exclusive ``filterDate``
        end), bounds (lon/lat), metadata filters, cloud mask and threshold, bands, reducer,
        resampling, fill value, the grid (CRS, transform, size), the number of ``computePixels``
        tiles, the first tile's request body and the uncompressed bytes in all.
    """
    itemsize = np.dtype(spec.dtype).itemsize
    tiles = split_grid(grid, len(spec.bands), itemsize, max_side=max_side)
    return {
        "collection": spec.collection,
        "dates": None if spec.start is None else {"first": spec.start, "last": spec.end,
                                                   "filterDate": [spec.start, exclusive_end(spec.end)]},
        "bounds_lonlat": list(_lonlat_bounds(grid)),
        "filters": [list(f) for f in spec.filters],
        "cloud_mask": spec.cloud_mask, "cloud_threshold": spec.cloud_threshold,
        "bands": list(spec.bands), "reducer": spec.reducer, "resampling": spec.resampling,
        "dtype": spec.dtype, "fill_value": fill_value(spec),
        "grid": {"crs": grid.crs, "transform": list(grid.transform), "width": grid.width, "height": grid.height},
        "requests": len(tiles) + (1 if spec.start is not None else 0),
        "tiles": len(tiles),
        "first_tile_request": pixel_request(spec, tiles[0][2]),
        "bytes": grid.width * grid.height * len(spec.bands) * itemsize,
    }


def describe_export(spec: CollectionSpec, grid: PixelGrid, name: str, kind: str, destination: str) -> dict:
    """The batch export task :meth:`LiveEarthEngine.export` would start, as plain data (a dry run)."""
    params = export_params(spec, grid, name)
    return {"task": "Export.image.toCloudStorage" if kind == "gcs" else "Export.image.toDrive",
            "bucket" if kind == "gcs" else "folder": destination, **params,
            "collection": spec.collection, "bands": list(spec.bands),
            "bytes": grid.width * grid.height * len(spec.bands) * np.dtype(spec.dtype).itemsize}


def _ee():
    import ee  # noqa: PLC0415 - lazy on purpose: importing core must not load ee

    return ee


@dataclass
class LiveEarthEngine:
    """The real adapter: builds ``ee`` expressions from specs and calls ``ee.data.computePixels``.

    Earth Engine is initialised on first use, not on construction, so an instance can be built
    offline; without credentials the first request raises :class:`CredentialsError`. The
    expression builders (:meth:`collection`, :meth:`image`, :meth:`request_image`) need an
    initialised ``ee`` but no network; the tests build them with earthengine-api's offline harness.
    """

    config: EarthEngineConfig = field(default_factory=EarthEngineConfig.from_env)
    _ready: bool = False

    def credentials(self):
        """The google-auth credentials of the configured credentials file, or ``None`` for ``earthengine authenticate``'s.

        A service-account key gives ``ee.ServiceAccountCredentials``; any other file
        (application-default user credentials, workload identity) is loaded with
        ``google.auth.load_credentials_from_file`` and Earth Engine's OAuth scopes.

        Raises:
            CredentialsError: The file is missing, not JSON, or of an unknown type.
        """
        path = self.config.credentials_file()
        if path is None:
            return None
        info, problem = self.config._file_info()
        if problem:
            raise CredentialsError(f"Earth Engine is not configured: {problem}")
        ee = _ee()
        if info.get("type") == "service_account":
            return ee.ServiceAccountCredentials(info["client_email"], key_data=json.dumps(info))
        import google.auth  # noqa: PLC0415 - comes with earthengine-api

        creds, _ = google.auth.load_credentials_from_file(str(path), scopes=ee.oauth.SCOPES)
        return creds

    def initialize(self) -> None:
        """Authenticate and initialise Earth Engine (once).

        Raises:
            CredentialsError: Missing project or credentials, or the server refused them.
        """
        if self._ready:
            return
        problems = self.config.problems()
        if problems:
            raise CredentialsError("Earth Engine is not configured: " + "; ".join(problems))
        creds = self.credentials()
        ee = _ee()
        project = self.config.effective_project
        try:
            if creds is not None:
                ee.Initialize(creds, project=project)
            else:
                ee.Initialize(project=project)
        except Exception as exc:  # ee raises EEException and google-auth errors
            raise CredentialsError(f"Earth Engine refused the {self.config.credentials_source} for project {project}: {exc}") from None
        self._ready = True

    def collection(self, spec: CollectionSpec, grid: PixelGrid):
        """The ``ee.ImageCollection`` of a spec: date, bounds and metadata filters, cloud mask, band selection.

        The bounds filter is the grid's footprint in its own CRS; dates are ``filterDate(start,
        end + 1 day)`` (``spec.end`` is inclusive). Cloud Score+ and s2cloudless are linked per
        scene by ``system:index`` (``ImageCollection.linkCollection``) and mask pixels with
        ``cs_cdf < threshold`` or ``probability >= threshold``.
        """
        ee = _ee()
        rect = ee.Geometry.Rectangle(list(_footprint(grid)), proj=grid.crs, geodesic=False)
        col = ee.ImageCollection(spec.collection).filterBounds(rect)
        if spec.start is not None:
            col = col.filterDate(spec.start, exclusive_end(spec.end))
        for prop, op, value in spec.filters:
            f_ = {"lt": ee.Filter.lt, "lte": ee.Filter.lte, "eq": ee.Filter.eq, "contains": ee.Filter.listContains}[op]
            col = col.filter(f_(prop, value))
        thr = spec.cloud_threshold
        if spec.cloud_mask == "cloud_score_plus":
            col = col.linkCollection(ee.ImageCollection(CLOUD_SCORE_PLUS), ["cs_cdf"]).map(
                lambda img: img.updateMask(img.select("cs_cdf").gte(thr)))
        elif spec.cloud_mask == "s2cloudless":
            col = col.linkCollection(ee.ImageCollection(S2_CLOUDLESS), ["probability"]).map(
                lambda img: img.updateMask(img.select("probability").lt(thr)))
        col = col.select(list(spec.bands))
        if spec.resampling == "bilinear":
            col = col.map(lambda img: img.resample("bilinear"))
        return col

    def image(self, spec: CollectionSpec, region: PixelGrid):
        """The composite ``ee.Image`` of a spec (masked where no clear pixel), reduced with ``spec.reducer``."""
        col = self.collection(spec, region)
        return {"median": col.median, "mode": col.mode, "first": col.mosaic}[spec.reducer]()

    def request_image(self, spec: CollectionSpec, grid: PixelGrid):
        """The image sent for pixels and exports: the composite unmasked with :func:`fill_value`, cast to ``spec.dtype``."""
        img = self.image(spec, grid).unmask(fill_value(spec))
        cast = {"uint8": img.toUint8, "uint16": img.toUint16, "int16": img.toInt16, "float32": img.toFloat}.get(spec.dtype)
        return cast() if cast else img

    def count_images(self, spec: CollectionSpec, grid: PixelGrid) -> int:
        """Images left after the filters (one ``computeValue`` request)."""
        self.initialize()
        ee = _ee()
        try:
            return int(ee.data.computeValue(self.collection(spec, grid).size()))
        except ee.EEException as exc:
            raise classify_exception(exc) from None
        except _network_errors() as exc:
            raise TransientError(f"Earth Engine request failed: {exc}") from None

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:
        """Fetch one tile with ``ee.data.computePixels`` (NUMPY_NDARRAY), classify failures."""
        self.initialize()
        ee = _ee()
        try:
            arr = ee.data.computePixels({"expression": self.request_image(spec, grid), **pixel_request(spec, grid)})
        except ee.EEException as exc:
            raise classify_exception(exc) from None
        except _network_errors() as exc:  # the HTTP client's network errors
            raise TransientError(f"Earth Engine request failed: {exc}") from None
        out = np.stack([np.asarray(arr[b]) for b in spec.bands]).astype(spec.dtype)
        if np.issubdtype(out.dtype, np.floating):
            out[~np.isfinite(out) | (out == FLOAT_SENTINEL)] = np.nan
        return out

    def export_task(self, spec: CollectionSpec, grid: PixelGrid, name: str, kind: str, destination: str):
        """The (unstarted) ``ee.batch.Task`` of a GeoTIFF export; parameters from :func:`export_params`."""
        ee = _ee()
        params = {"image": self.request_image(spec, grid), **export_params(spec, grid, name)}
        if kind == "gcs":
            return ee.batch.Export.image.toCloudStorage(bucket=destination, **params)
        if kind == "drive":
            return ee.batch.Export.image.toDrive(folder=destination, **params)
        raise EarthEngineError(f"batch export kind must be gcs or drive, got {kind!r}")

    def export(self, spec: CollectionSpec, grid: PixelGrid, name: str, kind: str, destination: str) -> str:
        """Start a batch export of a GeoTIFF named ``name`` on ``grid``, masked pixels declared nodata.

        ``kind="gcs"`` uses ``Export.image.toCloudStorage`` (``destination`` = bucket), ``"drive"``
        uses ``Export.image.toDrive`` (``destination`` = folder).

        Returns:
            The Earth Engine task id (follow it with ``earthengine task list``).

        Raises:
            EarthEngineError: Classified as for pixel requests (transient ones may be resubmitted).
        """
        self.initialize()
        ee = _ee()
        task = self.export_task(spec, grid, name, kind, destination)
        try:
            task.start()
        except ee.EEException as exc:
            raise classify_exception(exc) from None
        except _network_errors() as exc:
            raise TransientError(f"Earth Engine request failed: {exc}") from None
        return str(task.id)

    def map_layers(self, bounds_lonlat: tuple[float, float, float, float], start: str, end: str, *, level: str = "L1C",
                   cloud_threshold: float | None = None) -> list:
        """Folium tile layers of the AOI, drawn by Earth Engine through geemap (``EEFoliumTileLayer``).

        The Sentinel-2 median composite in true colour (B4, B3, B2, 0-3000 reflectance x 1e4),
        Dynamic World (mode) and ESA WorldCover, each in its class colours (:mod:`core.classes`).
        Nothing is downloaded: each layer costs one ``getMapId`` request and the browser fetches
        the tiles.

        Returns:
            ``folium.raster_layers.TileLayer`` subclasses, ready for ``add_to(map)``.

        Raises:
            EarthEngineError: As for pixel requests (credentials, quota, permission, network).
        """
        self.initialize()
        ee = _ee()
        try:
            return self._map_layers(bounds_lonlat, start, end, level, cloud_threshold)
        except ee.EEException as exc:
            raise classify_exception(exc) from None
        except _network_errors() as exc:
            raise TransientError(f"Earth Engine request failed: {exc}") from None

    def _map_layers(self, bounds_lonlat, start, end, level, cloud_threshold) -> list:
        from geemap.ee_tile_layers import EEFoliumTileLayer  # noqa: PLC0415 - lazy: geemap pulls in ipyleaflet

        from core.classes import get_scheme

        grid = utm_grid(bounds_lonlat, 10.0)
        s2 = self.image(sentinel2_spec(start, end, ["B4", "B3", "B2"], level=level, cloud_threshold=cloud_threshold), grid)
        layers = [EEFoliumTileLayer(s2, {"bands": ["B4", "B3", "B2"], "min": 0, "max": 3000},
                                    name=f"Earth Engine: Sentinel-2 {level} true colour {start}..{end}")]
        for spec, scheme_name, title in ((dynamic_world_spec(start, end), "dynamic_world", "Dynamic World (mode)"),
                                         (worldcover_spec(), "esa_worldcover", "ESA WorldCover 2021")):
            scheme = get_scheme(scheme_name)
            img = self.image(spec, grid).remap(scheme.ids, list(range(scheme.num_classes)))
            layers.append(EEFoliumTileLayer(img, {"min": 0, "max": scheme.num_classes - 1,
                                                  "palette": [c.lstrip("#") for c in scheme.colors]},
                                            name=f"Earth Engine: {title}", shown=False, opacity=0.7))
        return layers


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types of a failed connection (retried as transient)."""
    out: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        import httplib2  # noqa: PLC0415

        out.append(httplib2.HttpLib2Error)
    except ImportError:  # pragma: no cover
        pass
    try:
        from google.auth.exceptions import TransportError  # noqa: PLC0415

        out.append(TransportError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(out)


TRANSIENT_STATUS = {408, 500, 502, 503, 504}
TRANSIENT_REASONS = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED", "backendError", "rateLimitExceeded",
                     "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded", "QUOTA_EXCEEDED"}


def _http_error_fields(exc: BaseException) -> tuple[int | None, str | None, str]:
    """(HTTP status, error reason, message) of an Earth Engine error.

    ``ee.data`` raises ``EEException(message)`` while handling a googleapiclient ``HttpError``, so
    the HTTP status and the JSON error body (``error.status`` such as ``RESOURCE_EXHAUSTED`` and
    ``error.errors[].reason`` / ``error.details[].reason``) are on the exception's context.
    """
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        resp = getattr(cur, "resp", None)
        status = getattr(resp, "status", None) if resp is not None else getattr(cur, "status_code", None)
        if status is not None:
            reason = None
            try:
                body = json.loads(getattr(cur, "content", b"") or b"{}")
                err = body.get("error", {}) if isinstance(body, dict) else {}
                reasons = [d.get("reason") for d in err.get("errors", []) + err.get("details", []) if isinstance(d, dict)]
                reason = next((r for r in reasons if r), None) or err.get("status")
            except (ValueError, TypeError, AttributeError):
                pass
            return int(status), reason, str(exc)
        cur = cur.__cause__ or cur.__context__
    return None, None, str(exc)


def classify_exception(exc: BaseException) -> EarthEngineError:
    """Map an exception of ``ee`` (with its HTTP status and reason when it came from the server) to our errors."""
    status, reason, message = _http_error_fields(exc)
    return classify_error(message, status=status, reason=reason)


_QUOTA_RE = re.compile(r"\bquota\b|rate limit|too many requests", re.I)
_DENIED_RE = re.compile(r"permission|not authorized|not signed up|access denied|\b403\b", re.I)
_TRANSIENT_RE = re.compile(r"too many concurrent|timed out|deadline|\b50[0234]\b|internal error|service unavailable|"
                           r"connection reset|temporarily", re.I)


def classify_error(message: str, *, status: int | None = None, reason: str | None = None) -> EarthEngineError:
    """Map an Earth Engine error to the error a user can act on.

    With an HTTP status (and the error reason of the JSON body), the status decides: 401 ->
    :class:`CredentialsError`; 403 -> :class:`PermissionDeniedError` (or quota reasons); 429 ->
    :class:`QuotaError` when the message or reason names a quota, else :class:`TransientError`
    (rate limits, "too many concurrent aggregations"); 408 and 5xx -> :class:`TransientError`;
    any other status (400 "Total request size ... must be less than or equal to ...", 404 asset
    not found) -> a permanent :class:`EarthEngineError`, never retried. Without a status (client
    errors, network errors) whole words of the message decide.
    """
    quota = QuotaError(f"Earth Engine quota or rate limit reached ({message}); wait and retry, lower the number of "
                       "parallel requests, or use a project with a higher quota tier")
    denied = PermissionDeniedError(f"Earth Engine denied access ({message}); check that the project is registered for "
                                   "Earth Engine and the account has the Earth Engine Resource Viewer role")
    if status is not None:
        if status == 401 or reason == "UNAUTHENTICATED":
            return CredentialsError(f"Earth Engine did not accept the credentials ({message}); authenticate again")
        if reason in QUOTA_REASONS or (status == 429 and _QUOTA_RE.search(message) and "concurrent" not in message.lower()):
            return quota
        if status == 403 or reason == "PERMISSION_DENIED":
            return TransientError(message) if reason in TRANSIENT_REASONS else denied
        if status == 429 or status in TRANSIENT_STATUS or reason in TRANSIENT_REASONS:
            return TransientError(f"Earth Engine is busy (HTTP {status}): {message}")
        hint = ""
        if "request size" in message.lower() or "too large" in message.lower():
            hint = "; request smaller tiles (max_side) or fewer bands"
        return EarthEngineError(f"Earth Engine refused the request (HTTP {status}{', ' + reason if reason else ''}): {message}{hint}")
    if "concurrent" in message.lower():
        return TransientError(message)
    if _QUOTA_RE.search(message):
        return quota
    if _DENIED_RE.search(message):
        return denied
    if _TRANSIENT_RE.search(message):
        return TransientError(message)
    return EarthEngineError(f"Earth Engine error: {message}")


def download(
    adapter: EarthEngineAdapter,
    spec: CollectionSpec,
    grid: PixelGrid,
    *,
    cache_dir: str | Path | None = None,
    workers: int = 4,
    retries: int = 4,
    backoff_s: float = 1.0,
    max_side: int = 1024,
    max_pixels: int = 25_000_000,
    progress: Callable[[int, int], None] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> GeoRaster:
    """Fetch a composite on a grid: tiled, parallel, retried, cached.

    Args:
        adapter: Where pixels come from (:class:`LiveEarthEngine`, or a fake in tests).
        spec: What to fetch.
        grid: Where (CRS, transform, size).
        cache_dir: Folder of cached results (``None``: no cache). The key hashes spec and grid.
        workers: Parallel requests.
        retries: Attempts per tile after the first for :class:`TransientError` (exponential
            backoff ``backoff_s * 2**attempt``).
        backoff_s: First backoff in seconds.
        max_side: Largest tile side in pixels.
        max_pixels: Refuse grids larger than this (the AOI size limit).
        progress: Called with (tiles done, tiles total).
        sleep: Sleep function (default ``time.sleep``, looked up at call time; tests pass a no-op).

    Returns:
        GeoRaster (C, H, W) of ``spec.dtype`` with the grid's CRS and transform and band names.

    Raises:
        EmptyCollectionError: The adapter counts no image for the dates, AOI and filters (the
            message names them); nothing else is requested then.
        EarthEngineError: The grid is too large, or a tile failed with a non-transient error (at
            once, remaining tiles are not requested) or after all retries (quota, permission,
            credentials keep their specific types).
    """
    if grid.width * grid.height > max_pixels:
        raise EarthEngineError(f"the AOI needs {grid.width} x {grid.height} pixels, above the limit of {max_pixels:,}; draw a smaller area")
    key = hashlib.sha256((spec.key() + json.dumps(asdict(grid), sort_keys=True)).encode()).hexdigest()[:24]
    cached = Path(cache_dir) / f"{key}.tif" if cache_dir else None
    if cached is not None and cached.exists():
        return read_raster(cached)
    sleep = sleep or time.sleep
    count = getattr(adapter, "count_images", None)
    if count is not None and spec.start is not None and count(spec, grid) == 0:
        raise EmptyCollectionError(empty_collection_message(spec, grid))
    itemsize = np.dtype(spec.dtype).itemsize
    tiles = split_grid(grid, len(spec.bands), itemsize, max_side=max_side)
    out = np.full((len(spec.bands), grid.height, grid.width), spec.nodata, dtype=spec.dtype)

    def fetch(tile: tuple[int, int, PixelGrid]) -> tuple[int, int, np.ndarray]:
        r, c, sub = tile
        for attempt in range(retries + 1):
            try:
                arr = adapter.compute_pixels(spec, sub)
                if arr.shape != (len(spec.bands), sub.height, sub.width):
                    raise EarthEngineError(f"Earth Engine returned {arr.shape}, expected {(len(spec.bands), sub.height, sub.width)}")
                return r, c, arr
            except TransientError:
                if attempt == retries:
                    raise
                sleep(backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    done = 0
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = [pool.submit(fetch, t) for t in tiles]
        for fut in as_completed(futures):
            r, c, arr = fut.result()  # a permanent error (or a transient one after all retries) stops here
            out[:, r : r + arr.shape[1], c : c + arr.shape[2]] = arr
            done += 1
            if progress is not None:
                progress(done, len(tiles))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # tiles not yet started are not requested after a failure
    raster = GeoRaster(out, CRS.from_user_input(grid.crs), grid.affine, spec.nodata, tuple(spec.bands),
                       meta={"collection": spec.collection, "start": spec.start, "end": spec.end})
    if cached is not None:
        write_cog(raster, cached)
    return raster



def fetch_imagery(
    adapter: EarthEngineAdapter,
    grid: PixelGrid,
    start: str,
    end: str,
    bands: Sequence[str],
    *,
    level: str = "L1C",
    cloud_threshold: float | None = None,
    orbit: str = "DESCENDING",
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 4,
) -> GeoRaster:
    """Sentinel-2 bands and, if asked for, Sentinel-1 ``VV``/``VH`` on one grid, in ``bands`` order.

    Args:
        adapter: Earth Engine adapter.
        grid: Target grid.
        start: First date (ISO).
        end: Last date (ISO, inclusive).
        bands: Band names, Sentinel-2 (``B2`` ...) and/or ``VV``, ``VH``.
        level: Sentinel-2 ``"L1C"`` or ``"L2A"``.
        cloud_threshold: Cloud Score+ threshold (see :func:`sentinel2_spec`).
        orbit: Sentinel-1 orbit direction.
        cache_dir: Download cache folder.
        progress: Called with (tiles done, tiles total) of the optical download.
        workers: Parallel requests.

    Returns:
        Optical only: uint16 reflectance x 1e4, nodata 0. With radar: float32, nodata NaN
        (masked optical pixels NaN as well).
    """
    radar = [b for b in bands if b in ("VV", "VH")]
    optical = [b for b in bands if b not in ("VV", "VH")]
    parts = []
    if optical:
        parts.append(download(adapter, sentinel2_spec(start, end, optical, level=level, cloud_threshold=cloud_threshold), grid,
                              cache_dir=cache_dir, progress=progress, workers=workers))
        if not radar:
            return parts[0]
    parts.append(download(adapter, sentinel1_spec(start, end, orbit=orbit), grid, cache_dir=cache_dir, workers=workers))
    return stack_bands(parts, bands)
