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
exponential backoff, reassembles one :class:`core.raster.GeoRaster`, and caches it on disk keyed by
the request, so a repeated request costs nothing.

Collections (Earth Engine data catalog): ``COPERNICUS/S2_HARMONIZED`` (L1C) and
``COPERNICUS/S2_SR_HARMONIZED`` (L2A), whose "harmonized" DNs already have the +1000 offset of
processing baseline 04.00 removed; ``GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED`` (Pasquarella et al.
2023, band ``cs_cdf``: 1 = clear) or ``COPERNICUS/S2_CLOUD_PROBABILITY`` (s2cloudless, band
``probability`` in %); ``COPERNICUS/S1_GRD`` (sigma0 in dB, IW mode); ``GOOGLE/DYNAMICWORLD/V1``
(band ``label``) and ``ESA/WorldCover/v200`` (band ``Map``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from core.errors import LulcError
from core.raster import GeoRaster, read_raster, stack_bands, write_cog

__all__ = [
    "EarthEngineError", "CredentialsError", "QuotaError", "PermissionDeniedError", "TransientError",
    "EarthEngineConfig", "CollectionSpec", "PixelGrid", "EarthEngineAdapter", "LiveEarthEngine",
    "sentinel2_spec", "sentinel1_spec", "dynamic_world_spec", "worldcover_spec", "utm_grid", "split_grid", "download",
    "fetch_imagery",
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


@dataclass(frozen=True)
class EarthEngineConfig:
    """How to authenticate.

    Attributes:
        project: Google Cloud project registered for Earth Engine (``EARTHENGINE_PROJECT``).
        service_account_key: Path to a service-account JSON key (``EARTHENGINE_SERVICE_ACCOUNT_KEY``
            or ``GOOGLE_APPLICATION_CREDENTIALS``); ``None`` uses the user's stored credentials
            from ``earthengine authenticate`` (``~/.config/earthengine/credentials``).
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

    def problems(self) -> list[str]:
        """What is missing, in words a user can act on (empty when it looks usable)."""
        out = []
        if not self.project:
            out.append("set EARTHENGINE_PROJECT (or [earthengine] project in .streamlit/secrets.toml) to a Cloud project registered for Earth Engine")
        if self.service_account_key:
            if not Path(self.service_account_key).exists():
                out.append(f"the service-account key {self.service_account_key} does not exist")
        elif not self.user_credentials_path.exists():
            out.append("no credentials: run `earthengine authenticate` once, or set EARTHENGINE_SERVICE_ACCOUNT_KEY to a service-account JSON key")
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
        end: Last date (ISO, exclusive).
        filters: (property, operator, value) metadata filters; operators ``lt``, ``lte``, ``eq``,
            ``contains`` (``ee.Filter.listContains``).
        cloud_mask: ``None``, ``"cloud_score_plus"`` or ``"s2cloudless"``.
        cloud_threshold: Cloud Score+ ``cs_cdf`` minimum (clear >= it), or s2cloudless maximum
            probability in %.
        reducer: ``"median"``, ``"mode"`` or ``"first"``.
        resampling: ``"bilinear"`` for continuous bands, ``"nearest"`` for labels.
        dtype: numpy dtype of the returned pixels.
        nodata: Value for masked pixels.
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
        """Stable hash of the request (for the disk cache)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:16]


def sentinel2_spec(start: str, end: str, bands: Sequence[str], *, level: str = "L1C", cloud_mask: str = "cloud_score_plus",
                   cloud_threshold: float | None = None, max_scene_cloud: float = 60.0) -> CollectionSpec:
    """Sentinel-2 median composite of clear pixels.

    Args:
        start: First date, ISO ``YYYY-MM-DD``.
        end: Day after the last date.
        bands: Band names (``B2`` ... ``B12``; ``B10`` only at L1C).
        level: ``"L1C"`` (TOA) or ``"L2A"`` (surface reflectance): match the model bundle.
        cloud_mask: ``"cloud_score_plus"`` (default), ``"s2cloudless"`` or ``None``.
        cloud_threshold: Cloud Score+ ``cs_cdf`` >= threshold is clear (default 0.6); s2cloudless
            probability < threshold % is clear (default 40).
        max_scene_cloud: Skip scenes whose ``CLOUDY_PIXEL_PERCENTAGE`` is above this.

    Raises:
        EarthEngineError: Unknown level or mask, or a band the level lacks.
    """
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

    Raises:
        EarthEngineError: Orbit not ``ASCENDING``/``DESCENDING``.
    """
    if orbit not in ("ASCENDING", "DESCENDING"):
        raise EarthEngineError(f"orbit must be ASCENDING or DESCENDING, got {orbit!r}")
    return CollectionSpec(
        collection=S1_GRD, bands=("VV", "VH"), start=start, end=end,
        filters=(("instrumentMode", "eq", "IW"), ("transmitterReceiverPolarisation", "contains", "VV"),
                 ("transmitterReceiverPolarisation", "contains", "VH"), ("orbitProperties_pass", "eq", orbit)),
        reducer="median", resampling="bilinear", dtype="float32", nodata=float("nan"),
    )


def dynamic_world_spec(start: str, end: str) -> CollectionSpec:
    """Dynamic World class label, the most frequent (mode) over the dates; 255 where none."""
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
    or report.
    """

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:  # pragma: no cover - protocol
        """Pixels of ``spec`` on ``grid`` as ``spec.dtype`` (C, H, W)."""
        ...

    def export(self, spec: CollectionSpec, grid: PixelGrid, name: str, kind: str, destination: str) -> str:  # pragma: no cover
        """Start a batch export (``kind`` ``"gcs"`` or ``"drive"``) of ``spec`` on ``grid``; returns the task id."""
        ...


@dataclass
class LiveEarthEngine:
    """The real adapter: builds ``ee`` expressions from specs and calls ``ee.data.computePixels``.

    Earth Engine is initialised on first use, not on construction, so an instance can be built
    offline; without credentials the first request raises :class:`CredentialsError`.
    """

    config: EarthEngineConfig = field(default_factory=EarthEngineConfig.from_env)
    _ready: bool = False

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
        import ee  # noqa: PLC0415 - lazy on purpose

        try:
            if self.config.service_account_key:
                info = json.loads(Path(self.config.service_account_key).read_text())
                creds = ee.ServiceAccountCredentials(info["client_email"], self.config.service_account_key)
                ee.Initialize(creds, project=self.config.project)
            else:
                ee.Initialize(project=self.config.project)
        except Exception as exc:  # ee raises EEException and google-auth errors
            raise CredentialsError(f"Earth Engine refused the credentials for project {self.config.project}: {exc}") from None
        self._ready = True

    def image(self, spec: CollectionSpec, region: PixelGrid):
        """The ``ee.Image`` of a spec (bounds filter from the grid's footprint)."""
        import ee  # noqa: PLC0415

        g = region
        a, _, c, _, e, f = g.transform
        rect = ee.Geometry.Rectangle([c, f + e * g.height, c + a * g.width, f], proj=g.crs, geodesic=False)
        if spec.reducer == "first" and spec.start is None:
            col = ee.ImageCollection(spec.collection)
        else:
            col = ee.ImageCollection(spec.collection).filterBounds(rect).filterDate(spec.start, spec.end)
        for prop, op, value in spec.filters:
            f_ = {"lt": ee.Filter.lt, "lte": ee.Filter.lte, "eq": ee.Filter.eq, "contains": ee.Filter.listContains}[op]
            col = col.filter(f_(prop, value))
        if spec.cloud_mask == "cloud_score_plus":
            thr = spec.cloud_threshold
            col = col.linkCollection(ee.ImageCollection(CLOUD_SCORE_PLUS), ["cs_cdf"]).map(
                lambda img: img.updateMask(img.select("cs_cdf").gte(thr)))
        elif spec.cloud_mask == "s2cloudless":
            thr = spec.cloud_threshold
            col = col.linkCollection(ee.ImageCollection(S2_CLOUDLESS), ["probability"]).map(
                lambda img: img.updateMask(img.select("probability").lt(thr)))
        col = col.select(list(spec.bands))
        if spec.resampling == "bilinear":
            col = col.map(lambda img: img.resample("bilinear"))
        img = {"median": col.median, "mode": col.mode, "first": col.mosaic}[spec.reducer]()
        # masked pixels come back as 0 unless unmasked; a float spec's NaN nodata goes through a sentinel
        return img.unmask(FLOAT_SENTINEL if math.isnan(float(spec.nodata)) else spec.nodata)

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:
        """Fetch one tile with ``ee.data.computePixels`` (NUMPY_NDARRAY), classify failures."""
        self.initialize()
        import ee  # noqa: PLC0415

        try:
            arr = ee.data.computePixels({"expression": self.image(spec, grid), "fileFormat": "NUMPY_NDARRAY",
                                         "grid": grid.to_request(), "bandIds": list(spec.bands)})
        except ee.EEException as exc:
            raise classify_error(str(exc)) from None
        except Exception as exc:  # network errors of the HTTP client
            raise TransientError(f"Earth Engine request failed: {exc}") from None
        out = np.stack([np.asarray(arr[b]) for b in spec.bands]).astype(spec.dtype)
        if np.issubdtype(out.dtype, np.floating):
            out[~np.isfinite(out) | (out == FLOAT_SENTINEL)] = np.nan
        return out


    def export(self, spec: CollectionSpec, grid: PixelGrid, name: str, kind: str, destination: str) -> str:
        """Start a batch export of a GeoTIFF named ``name`` on ``grid``.

        ``kind="gcs"`` uses ``Export.image.toCloudStorage`` (``destination`` = bucket), ``"drive"``
        uses ``Export.image.toDrive`` (``destination`` = folder).

        Returns:
            The Earth Engine task id (follow it with ``earthengine task list``).
        """
        self.initialize()
        import ee  # noqa: PLC0415

        params = {"image": self.image(spec, grid), "description": name[:100], "fileNamePrefix": name, "crs": grid.crs,
                  "crsTransform": list(grid.transform), "dimensions": f"{grid.width}x{grid.height}", "fileFormat": "GeoTIFF"}
        try:
            if kind == "gcs":
                task = ee.batch.Export.image.toCloudStorage(bucket=destination, **params)
            elif kind == "drive":
                task = ee.batch.Export.image.toDrive(folder=destination, **params)
            else:
                raise EarthEngineError(f"batch export kind must be gcs or drive, got {kind!r}")
            task.start()
        except ee.EEException as exc:
            raise classify_error(str(exc)) from None
        return str(task.id)


def classify_error(message: str) -> EarthEngineError:
    """Map an Earth Engine error message to the error a user can act on."""
    m = message.lower()
    if "quota" in m or "rate limit" in m or "429" in m or "too many requests" in m:
        return QuotaError(f"Earth Engine quota or rate limit reached ({message}); wait and retry, lower the number of "
                          "parallel requests, or use a project with a higher quota tier")
    if "permission" in m or "not authorized" in m or "403" in m or "not signed up" in m or "access denied" in m:
        return PermissionDeniedError(f"Earth Engine denied access ({message}); check that the project is registered for "
                                     "Earth Engine and the account has the Earth Engine Resource Viewer role")
    if "too many concurrent" in m or "timed out" in m or "deadline" in m or "503" in m or "500" in m or "internal error" in m:
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
    sleep: Callable[[float], None] = time.sleep,
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
        sleep: Sleep function (tests pass a no-op).

    Returns:
        GeoRaster (C, H, W) of ``spec.dtype`` with the grid's CRS and transform and band names.

    Raises:
        EarthEngineError: The grid is too large, or a tile failed with a non-transient error or
            after all retries (quota, permission, credentials keep their specific types).
    """
    if grid.width * grid.height > max_pixels:
        raise EarthEngineError(f"the AOI needs {grid.width} x {grid.height} pixels, above the limit of {max_pixels:,}; draw a smaller area")
    key = hashlib.sha256((spec.key() + json.dumps(asdict(grid), sort_keys=True)).encode()).hexdigest()[:24]
    cached = Path(cache_dir) / f"{key}.tif" if cache_dir else None
    if cached is not None and cached.exists():
        return read_raster(cached)
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
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for r, c, arr in pool.map(fetch, tiles):
            out[:, r : r + arr.shape[1], c : c + arr.shape[2]] = arr
            done += 1
            if progress is not None:
                progress(done, len(tiles))
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
        end: Day after the last date.
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
