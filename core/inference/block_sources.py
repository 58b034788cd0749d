"""Where the pixels of a Dask block come from: a GeoTIFF/VRT or an Earth Engine request.

A block source is picklable and opened anew in each block task (:func:`core.inference.blocks.predict_block`):
``source.open(region)`` yields ``(grid view, read)``, where ``read(window)`` gives float32 (C, h, w)
model input in the model's band order, NaN = nodata, after the input decision made once on the client
(:mod:`core.inputs.decision`). Besides the reading, a source says what it is (``describe``, for the
run's manifest), which files it reads (``input_paths``, never overwritten by an output) and how it
was read (``tags``, written into every block file).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from core.errors import BandError
from core.inputs.decision import InputDecision
from core.io.raster import _open, nodata_to_nan

__all__ = ["RasterSource", "EarthEngineSource", "made_once"]


@dataclass(frozen=True)
class RasterSource:
    """A GeoTIFF or VRT read window by window; picklable, opened anew in each task.

    Attributes:
        path: GeoTIFF or VRT (several GeoTIFFs on one grid can be joined in a VRT, e.g. with
            ``gdalbuildvrt -separate``).
        bands: Band names the model expects, in its order.
        decision: How to read the input (:func:`core.inputs.decision.decide_for_file`: band aliases, scale,
            +1000 offset, filled optional bands), decided once on the client and applied to every
            window, exactly as the single-process path does. ``None``: bands read by exact name
            (band descriptions), raw values, ``nodata`` -> NaN.
    """

    path: str
    bands: tuple[str, ...]
    decision: InputDecision | None = None

    def describe(self) -> dict:
        """Grid and identity of the input: height, width, crs (WKT), transform, size, mtime.

        Raises:
            RasterReadError: Missing or unreadable file.
            BandError: The input lacks some of ``bands``.
        """
        with self.open() as (ds, _):
            return {
                "path": str(Path(self.path).resolve()),
                "height": ds.height,
                "width": ds.width,
                "crs": ds.crs.to_wkt() if ds.crs else None,
                "transform": list(ds.transform)[:6],
                "bytes": os.path.getsize(self.path),
                "mtime": os.path.getmtime(self.path),
            }

    @property
    def input_paths(self) -> list[str]:
        """Files the job reads (never to be overwritten by an output)."""
        return [self.path]

    @contextlib.contextmanager
    def open(self, region: Window | None = None):
        """Yield ``(dataset, read)`` where ``read(window)`` gives float32 (C, h, w) model input, NaN = nodata.

        Args:
            region: The part of the grid the caller will read (a block and its halo); a file is
                read window by window, so it is not used here.

        Raises:
            RasterReadError: Missing or unreadable file.
            BandError: The input lacks some of ``bands`` (without a decision) or the decision is for
                other bands.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with _open(self.path) as ds:
                if self.decision is not None:
                    if tuple(self.decision.bands) != tuple(self.bands):
                        raise BandError(f"the input decision is for bands {', '.join(self.decision.bands)}, not {', '.join(self.bands)}")
                    indexes, apply = self.decision.read_indexes, self.decision.apply
                else:
                    names = [d or f"band_{i + 1}" for i, d in enumerate(ds.descriptions)]
                    missing = [b for b in self.bands if b not in names]
                    if missing:
                        raise BandError(f"{self.path} lacks band(s) {', '.join(missing)}; it has {', '.join(names)}")
                    indexes = [names.index(b) + 1 for b in self.bands]
                    nodata = ds.nodata

                    def apply(arr: np.ndarray) -> np.ndarray:
                        return nodata_to_nan(arr, nodata)

                yield ds, (lambda window: apply(ds.read(indexes, window=window)))

    def tags(self) -> dict[str, str]:
        """GeoTIFF tags recording how the input was read (the decision's, else none)."""
        return self.decision.to_tags() if self.decision is not None else {}


@dataclass(frozen=True)
class _GridView:
    """The georeferencing a block needs from its source: CRS and window transforms."""

    crs: object
    transform: object

    def window_transform(self, window: Window):
        return rasterio.windows.transform(window, self.transform)


@dataclass(frozen=True)
class EarthEngineSource:
    """An AOI and dates on Earth Engine, fetched block by block with ``computePixels``; picklable.

    Each block task downloads only its own read window (block plus halo) through
    :func:`core.sources.earth_engine.download` (split under the request limits, transient errors
    retried with backoff, optional disk cache), so the AOI is never downloaded whole.

    Attributes:
        grid: The whole output grid (UTM, 10 m: :func:`core.sources.earth_engine.utm_grid`).
        spec: What to fetch (:func:`core.sources.earth_engine.sentinel2_spec`); its bands are the
            input's bands in "file" order.
        bands: Band names the model expects, in its order.
        adapter_factory: Zero-argument picklable callable returning the Earth Engine adapter
            (e.g. the class :class:`core.sources.earth_engine.LiveEarthEngine`); called once per
            worker process, so every worker needs the credentials too.
        decision: How the fetched bands become model input (:func:`core.inputs.decision.decide`); ``None``:
            bands by exact name, ``spec.nodata`` -> NaN.
        cache_dir: Download cache folder shared by the workers (``None``: no cache).
        retries: Retries of a request after a transient error.
    """

    grid: object
    spec: object
    bands: tuple[str, ...]
    adapter_factory: Callable[[], object]
    decision: InputDecision | None = None
    cache_dir: str | None = None
    retries: int = 4

    @property
    def path(self) -> str:
        """An identifier of the request for messages and the manifest (not a file)."""
        return f"earthengine:{self.spec.collection}:{self.spec.start}..{self.spec.end}:{self.spec.key()}"

    @property
    def input_paths(self) -> list[str]:
        """No local file is read."""
        return []

    def describe(self) -> dict:
        """Grid and identity of the request: height, width, crs (WKT), transform, spec key."""
        from rasterio.crs import CRS

        return {"path": self.path, "height": self.grid.height, "width": self.grid.width,
                "crs": CRS.from_user_input(self.grid.crs).to_wkt(), "transform": list(self.grid.transform)[:6],
                "spec": self.spec.key()}

    @contextlib.contextmanager
    def open(self, region: Window | None = None):
        """Fetch ``region`` (default the whole grid) once; yield ``(grid view, read)`` like :class:`RasterSource`.

        ``read(window)`` slices the fetched region: float32 (C, h, w) model input in the model's
        band order (reflectance x 1e4), NaN = nodata; ``window`` must lie inside ``region``. The
        region is held in memory: uint16 (C_in, H, W), about 90 MB for a 2016 px block of 9 bands
        with its halo.

        Raises:
            EarthEngineError: Credentials, quota, permission or request problems (see
                :func:`core.sources.earth_engine.download`).
            BandError: The decision is for other bands.
        """
        from rasterio.crs import CRS

        from core.sources.earth_engine import PixelGrid, download

        if self.decision is not None and tuple(self.decision.bands) != tuple(self.bands):
            raise BandError(f"the input decision is for bands {', '.join(self.decision.bands)}, not {', '.join(self.bands)}")
        g = self.grid
        region = region or Window(0, 0, g.width, g.height)
        r0, c0, h, w = int(region.row_off), int(region.col_off), int(region.height), int(region.width)
        sub = PixelGrid(g.crs, tuple(rasterio.windows.transform(region, g.affine))[:6], w, h)
        raw = download(made_once(self.adapter_factory), self.spec, sub, cache_dir=self.cache_dir, retries=self.retries,
                       workers=2, max_pixels=max(25_000_000, w * h))
        if self.decision is not None:
            data = self.decision.apply(raw.data)
        else:
            names = list(self.spec.bands)
            missing = [b for b in self.bands if b not in names]
            if missing:
                raise BandError(f"the Earth Engine request lacks band(s) {', '.join(missing)}")
            data = nodata_to_nan(raw.data[[names.index(b) for b in self.bands]], raw.nodata)

        def read(window: Window) -> np.ndarray:
            r, c = int(window.row_off) - r0, int(window.col_off) - c0
            return data[:, r : r + int(window.height), c : c + int(window.width)]

        yield _GridView(CRS.from_user_input(g.crs), g.affine), read

    def tags(self) -> dict[str, str]:
        """GeoTIFF tags recording the request and how it was read."""
        out = self.decision.to_tags() if self.decision is not None else {}
        out.update({"LULC_EE_COLLECTION": self.spec.collection, "LULC_EE_DATES": f"{self.spec.start}..{self.spec.end}",
                    "LULC_EE_CLOUD_MASK": str(self.spec.cloud_mask), "LULC_EE_REDUCER": self.spec.reducer})
        return out


_MADE: dict[str, object] = {}
_MADE_LOCK = threading.Lock()


def made_once(factory: Callable[[], object]):
    """What ``factory`` returns (a forward pass, an Earth Engine adapter), made once per worker process.

    Args:
        factory: Zero-argument picklable callable; its Dask token is the cache key.

    Returns:
        The object the first call of an equal factory made in this process.
    """
    from dask.base import tokenize

    key = tokenize(factory)
    with _MADE_LOCK:
        if key not in _MADE:
            _MADE[key] = factory()
        return _MADE[key]
