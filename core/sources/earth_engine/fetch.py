"""Pixels of a spec on a grid: tiled under Earth Engine's request limits, parallel, retried, cached.

:func:`download` splits a grid into tiles under Earth Engine's request limits (48 MB of
uncompressed pixels and 32768 pixels per side per ``computePixels`` request; Earth Engine REST
reference, ``projects.image.computePixels``), fetches them in parallel with retries and
exponential backoff through an :class:`EarthEngineAdapter`, reassembles one
:class:`core.io.raster.GeoRaster`, and caches it on disk keyed by the request, so a repeated
request costs nothing. :func:`describe_request` and :func:`describe_export` say what would be sent
(a dry run), as plain data.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from rasterio.crs import CRS

from core.io.raster import GeoRaster, read_raster, stack_bands, write_cog
from core.sources.earth_engine.config import EarthEngineError, EmptyCollectionError, TransientError
from core.sources.earth_engine.specs import (
    CollectionSpec,
    PixelGrid,
    exclusive_end,
    fill_value,
    sentinel1_spec,
    sentinel2_spec,
)

__all__ = [
    "EarthEngineAdapter", "split_grid", "download", "fetch_imagery", "empty_collection_message", "pixel_request",
    "export_params", "describe_request", "describe_export", "MAX_REQUEST_BYTES", "MAX_REQUEST_SIDE",
]

MAX_REQUEST_BYTES = 48 * 2**20
"""computePixels limit on uncompressed pixels per request (bytes)."""
MAX_REQUEST_SIDE = 32768
"""computePixels limit on pixels per side."""


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


def empty_collection_message(spec: CollectionSpec, grid: PixelGrid) -> str:
    """What to tell the user when no image matches: the dates, the AOI and the cloud limits."""
    w, s, e, n = grid.lonlat_bounds()
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
        "bounds_lonlat": list(grid.lonlat_bounds()),
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
    request = {"collection": spec.collection, "start": spec.start, "end": spec.end}  # what was fetched (the maps' provenance)
    if cached is not None and cached.exists():
        return replace(read_raster(cached), meta=request)
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
                       meta=request)
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
