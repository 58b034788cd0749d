"""Distributed block prediction on Dask: country-scale class maps, resumable after a kill.

The output grid is cut into square blocks whose side is a multiple of the tile stride
``s = tile - overlap``. Each block is one idempotent Dask task that

1. reads its window of the input plus a halo (``s`` pixels above/left, ``overlap`` pixels
   below/right, clipped at the raster's edges),
2. predicts it with the same run policy as the single-process path (:meth:`core.inference.policy.RunPolicy.run`:
   tiled, overlap-blended inference, or one full-frame pass of the whole input as one block), and
3. writes its own Cloud-Optimized GeoTIFF(s) atomically (:func:`core.io.outputs.atomic_path`).

Why this halo gives exactly the single-process result, seams included: a block's read window
starts on a multiple of ``s``, so its local tile grid is a subset of the global tile grid; every
global tile that touches a pixel of the block starts at most ``s`` pixels before the block and ends
at most ``overlap`` pixels after it, so it lies whole inside the window (or is clipped by the
raster's edge exactly as in the global run). Every output pixel therefore sums the same tiles'
probabilities with the same blending weights in the same order as the single-process run.
The price is the recomputed halo tiles: ``((n + 1) / n)^2`` tiles per block of ``n x n`` strides,
1.23x for 2016 px blocks and 1.11x for 4032 px blocks at tile 256 / overlap 32.

A JSON manifest in the blocks folder records the run's settings and every finished block; it is
rewritten atomically by the client after each block, so a run killed at any point resumes and
redoes only the blocks not recorded (a block file without a manifest entry is redone too). A VRT
assembles the blocks, and on request one COG is made from the VRT (GDAL streams it, so memory
stays flat).

The forward pass is made on each worker from a zero-argument, picklable ``forward_factory``
(for example :class:`models.runtimes.ForwardFactory`) and cached per worker process, so the model
is loaded once per worker, not once per block. ``core`` never imports torch: the factory is given
by the caller.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from core.errors import BandError, LulcError
from core.inference.policy import RunPolicy
from core.inference.streaming import NODATA_CLASS, _class_lut
from core.inference.tiling import ForwardFn, TileGrid
from core.inputs.decision import InputDecision
from core.io.outputs import atomic_path, atomic_write_text, check_outputs
from core.io.raster import _colormap_arg, _open, nodata_to_nan

__all__ = [
    "Block",
    "block_grid_summary",
    "BlockFailedError",
    "DistributedResult",
    "EarthEngineSource",
    "ManifestMismatchError",
    "RasterSource",
    "plan_blocks",
    "predict_block",
    "predict_distributed",
    "write_vrt",
    "MANIFEST_NAME",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "lulc-explorer/blocks/1"
_COG_OPTIONS = {"driver": "COG", "compress": "DEFLATE", "blocksize": 256, "BIGTIFF": "IF_SAFER"}


class BlockFailedError(LulcError):
    """Some blocks failed on every attempt; the finished ones are kept for a resumed run."""


class ManifestMismatchError(LulcError):
    """The blocks folder holds a run with other settings (input, model, tile, block size)."""


@dataclass(frozen=True)
class Block:
    """One block of the output grid and the window read to predict it.

    Attributes:
        row: Block row index.
        col: Block column index.
        y0: First output row of the block (pixels, raster coordinates).
        x0: First output column.
        height: Output rows of the block.
        width: Output columns.
        ry0: First row of the read window (``y0`` minus the halo, >= 0).
        rx0: First column of the read window.
        rheight: Rows of the read window.
        rwidth: Columns of the read window.
    """

    row: int
    col: int
    y0: int
    x0: int
    height: int
    width: int
    ry0: int
    rx0: int
    rheight: int
    rwidth: int

    @property
    def key(self) -> str:
        """Stable name of the block, ``r0001_c0002``; its files are ``<key>.tif`` / ``<key>_conf.tif``."""
        return f"r{self.row:04d}_c{self.col:04d}"


def plan_blocks(height: int, width: int, *, block_size: int, tile: int, overlap: int,
                full_frame: bool = False) -> tuple[int, list[Block]]:
    """Cut an H x W output grid into blocks aligned with the tile grid.

    With ``full_frame`` (the run policy's one-pass rule, :mod:`core.inference.policy`) the whole grid is
    one block, so that the map equals the single-process one.

    Args:
        height: Raster rows H.
        width: Raster columns W.
        block_size: Wanted block side in pixels; rounded to the nearest multiple of the stride
            ``tile - overlap`` (at least one stride).
        tile: Tile side T of the tiled inference.
        overlap: Overlap o of the tiled inference (0 <= o <= T / 2).
        full_frame: One block of the whole grid.

    Returns:
        (block side used, blocks in row-major order).

    Raises:
        ValueError: Bad tile/overlap or a block size below 1.
    """
    grid = TileGrid(height, width, tile, overlap)  # validates tile/overlap/size
    if block_size < 1:
        raise ValueError(f"block size must be positive, got {block_size}")
    if full_frame:
        return max(height, width), [Block(0, 0, 0, 0, height, width, 0, 0, height, width)]
    s = grid.stride
    bs = max(1, round(block_size / s)) * s
    before = s if overlap > 0 else 0
    blocks = []
    for i, y0 in enumerate(range(0, height, bs)):
        for j, x0 in enumerate(range(0, width, bs)):
            h, w = min(bs, height - y0), min(bs, width - x0)
            ry0, rx0 = max(0, y0 - before), max(0, x0 - before)
            ry1, rx1 = min(height, y0 + h + overlap), min(width, x0 + w + overlap)
            blocks.append(Block(i, j, y0, x0, h, w, ry0, rx0, ry1 - ry0, rx1 - rx0))
    return bs, blocks


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
        raw = download(_made_once(self.adapter_factory), self.spec, sub, cache_dir=self.cache_dir, retries=self.retries,
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


def _made_once(factory: Callable[[], object]):
    """What ``factory`` returns (a forward pass, an Earth Engine adapter), made once per worker process."""
    from dask.base import tokenize

    key = tokenize(factory)
    with _MADE_LOCK:
        if key not in _MADE:
            _MADE[key] = factory()
        return _MADE[key]


def _block_paths(out_dir: Path, block: Block) -> tuple[Path, Path]:
    return out_dir / f"{block.key}.tif", out_dir / f"{block.key}_conf.tif"


def predict_block(
    block: Block,
    source: RasterSource | EarthEngineSource,
    forward_factory: Callable[[], ForwardFn],
    out_dir: str | Path,
    policy: RunPolicy,
    *,
    num_classes: int,
    class_ids: Sequence[int] | None = None,
    colormap: Mapping[int, str] | None = None,
    confidence: bool = False,
    gdal_cache_mb: int = 64,
) -> dict:
    """Predict one block and write its COG(s); idempotent (a rerun rewrites the same files).

    Args:
        block: The block (see :func:`plan_blocks`).
        source: Where the bands are read from.
        forward_factory: Zero-argument picklable callable returning the network's forward
            (``(B, C, T, T)`` float32 raw band values -> ``(B, K, T, T)`` probabilities).
        out_dir: Blocks folder; ``<key>.tif`` (uint8 class ids, nodata 255, colour table) and,
            with ``confidence``, ``<key>_conf.tif`` (float32 probability of the chosen class)
            are written there atomically, with the block's georeferencing.
        policy: How the model runs (:func:`core.inference.policy.plan_run` for the whole input).
        num_classes: K.
        class_ids: Class id of each output channel (default 0..K-1).
        colormap: Class id -> ``#rrggbb``.
        confidence: Also write the confidence COG.
        gdal_cache_mb: GDAL block cache of the task (MB).

    Returns:
        ``{"key", "seconds", "tiles", "peak_rss_mb", "pid"}``; peak RSS is the worker process's
        high-water mark so far (``getrusage``, MiB).

    Raises:
        BandError, RasterReadError: Bad input. Any error of the forward pass propagates; nothing
        is left at the block's paths in that case.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    forward = _made_once(forward_factory)
    lut = _class_lut(num_classes, class_ids)
    cls = np.full((block.height, block.width), NODATA_CLASS, dtype=np.uint8)
    conf = np.zeros((block.height, block.width), dtype=np.float32) if confidence else None
    region = Window(block.rx0, block.ry0, block.rwidth, block.rheight)
    with rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb)), source.open(region) as (ds, read_window):
        transform = ds.window_transform(Window(block.x0, block.y0, block.width, block.height))
        crs = ds.crs

        def read(r: int, c: int, h: int, w: int) -> np.ndarray:
            return read_window(Window(block.rx0 + c, block.ry0 + r, w, h))

        def write(r: int, c: int, probs: np.ndarray, valid: np.ndarray) -> None:
            h, w = valid.shape
            gy0, gx0 = block.ry0 + r, block.rx0 + c
            y0, y1 = max(gy0, block.y0), min(gy0 + h, block.y0 + block.height)
            x0, x1 = max(gx0, block.x0), min(gx0 + w, block.x0 + block.width)
            if y0 >= y1 or x0 >= x1:
                return  # a region of the halo only
            p = probs[:, y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
            v = valid[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
            oy, ox = y0 - block.y0, x0 - block.x0
            cls[oy : oy + y1 - y0, ox : ox + x1 - x0] = np.where(v, lut[p.argmax(axis=0)], NODATA_CLASS)
            if conf is not None:
                conf[oy : oy + y1 - y0, ox : ox + x1 - x0] = np.where(v, p.max(axis=0), 0.0)

        n_passes = policy.run(read, forward, write, num_classes=num_classes, height=block.rheight, width=block.rwidth)
    base = {"height": block.height, "width": block.width, "count": 1, "crs": crs, "transform": transform}
    cls_path, conf_path = _block_paths(out_dir, block)
    if conf is not None:
        with atomic_path(conf_path) as tmp, rasterio.open(tmp, "w", dtype="float32", nodata=0.0, **base, **_COG_OPTIONS) as dst:
            dst.write(conf, 1)
            dst.descriptions = ("confidence",)
            dst.update_tags(**source.tags())
    with atomic_path(cls_path) as tmp, rasterio.open(tmp, "w", dtype="uint8", nodata=NODATA_CLASS, **base, **_COG_OPTIONS) as dst:
        dst.write(cls, 1)
        dst.descriptions = ("class",)
        dst.update_tags(**source.tags())
        cmap = _colormap_arg(colormap)
        if cmap:
            dst.write_colormap(1, cmap)
    return {
        "key": block.key,
        "seconds": round(time.perf_counter() - t0, 3),
        "tiles": n_passes,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "pid": os.getpid(),
    }


def write_vrt(
    path: str | Path,
    blocks: Sequence[Block],
    files: Sequence[str],
    *,
    height: int,
    width: int,
    crs_wkt: str | None,
    transform: Sequence[float],
    dtype: str,
    nodata: float | None,
    description: str,
    colormap: Mapping[int, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write a GDAL VRT that mosaics block files into the full raster grid (atomically).

    Args:
        path: The VRT; block files are referenced relative to its folder.
        blocks: The blocks, one per file.
        files: File name of each block, relative to the VRT's folder.
        height: Raster rows H.
        width: Raster columns W.
        crs_wkt: CRS as WKT, or None.
        transform: Affine (a, b, c, d, e, f) in rasterio order.
        dtype: ``"uint8"`` or ``"float32"``.
        nodata: Nodata value or None.
        description: Band description.
        colormap: Class id -> ``#rrggbb`` (colour table of a class map).
        tags: Dataset metadata (kept by a COG made from the VRT).

    Returns:
        ``path``.
    """
    gdal_type = {"uint8": "Byte", "float32": "Float32"}[dtype]
    a, b, c, d, e, f = transform
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs_wkt:
        lines.append(f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(crs_wkt)}</SRS>')
    lines.append(f"  <GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>")
    if tags:
        lines.append("  <Metadata>")
        lines += [f'    <MDI key="{escape(str(k), {chr(34): "&quot;"})}">{escape(str(v))}</MDI>' for k, v in tags.items()]
        lines.append("  </Metadata>")
    lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="1">')
    lines.append(f"    <Description>{escape(description)}</Description>")
    if nodata is not None:
        lines.append(f"    <NoDataValue>{nodata}</NoDataValue>")
    cmap = _colormap_arg(colormap)
    if cmap:
        lines.append("    <ColorInterp>Palette</ColorInterp>")
        lines.append("    <ColorTable>")
        for i in range(max(cmap) + 1):
            r, g, bl, al = (tuple(cmap[i]) + (255,))[:4] if i in cmap else (0, 0, 0, 0)
            lines.append(f'      <Entry c1="{r}" c2="{g}" c3="{bl}" c4="{al}"/>')
        lines.append("    </ColorTable>")
    for blk, name in zip(blocks, files, strict=True):
        lines += [
            "    <SimpleSource>",
            f'      <SourceFilename relativeToVRT="1">{escape(name)}</SourceFilename>',
            "      <SourceBand>1</SourceBand>",
            f'      <SrcRect xOff="0" yOff="0" xSize="{blk.width}" ySize="{blk.height}"/>',
            f'      <DstRect xOff="{blk.x0}" yOff="{blk.y0}" xSize="{blk.width}" ySize="{blk.height}"/>',
            "    </SimpleSource>",
        ]
    lines += ["  </VRTRasterBand>", "</VRTDataset>", ""]
    return atomic_write_text(path, "\n".join(lines))


@dataclass
class DistributedResult:
    """What a distributed run did.

    Attributes:
        output: The class map written (COG or VRT).
        confidence: The confidence map written, if asked for.
        blocks_dir: Folder of block files, the manifest and the VRTs.
        block_size: Block side used (pixels, a multiple of the tile stride).
        n_blocks: Blocks in the grid.
        computed: Keys of blocks predicted in this run.
        skipped: Keys of blocks found finished in the manifest (resume).
        failures: ``(key, attempt, message)`` of every failed attempt (retried or not).
        stats: Per computed block: the dict returned by :func:`predict_block`.
        seconds: Wall time of the run.
    """

    output: Path
    confidence: Path | None
    blocks_dir: Path
    block_size: int
    n_blocks: int
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _load_manifest(path: Path, settings: dict) -> dict:
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "settings": settings, "blocks": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestMismatchError(f"{path} cannot be read ({exc}); delete the blocks folder {path.parent} to start afresh") from None
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("settings") != settings:
        old = manifest.get("settings", {}) if isinstance(manifest.get("settings"), dict) else {}
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise ManifestMismatchError(
            f"the blocks folder {path.parent} holds a run with other settings ({', '.join(diff) or 'format'} differ); "
            "delete it or choose another blocks folder"
        )
    return manifest


def _open_client(scheduler: str | None, workers: int | None, threads_per_worker: int, processes: bool):
    """A dask.distributed client: on ``scheduler`` if given, else on a new LocalCluster."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except OSError as exc:
            raise LulcError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start it with `dask scheduler` "
                            "or leave out --scheduler to use a local cluster") from None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=processes,
                           dashboard_address=None, silence_logs=logging.CRITICAL)
    return Client(cluster), cluster


def predict_distributed(
    source: RasterSource | EarthEngineSource,
    forward_factory: Callable[[], ForwardFn],
    dst_path: str | Path,
    *,
    num_classes: int,
    class_ids: Sequence[int] | None = None,
    colormap: Mapping[int, str] | None = None,
    confidence_path: str | Path | None = None,
    blocks_dir: str | Path | None = None,
    model_id: str = "",
    policy: RunPolicy,
    block_size: int = 4096,
    workers: int | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
    scheduler: str | None = None,
    client=None,
    retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> DistributedResult:
    """Predict a large raster block by block on a Dask cluster, resumably.

    Args:
        source: The input: a GeoTIFF or VRT (bands by name), or an Earth Engine request whose
            blocks are fetched by the workers.
        forward_factory: Zero-argument picklable callable returning the forward pass; called once
            per worker process.
        dst_path: The class map: a ``.vrt`` (mosaic of the block files only) or any other name
            for one COG assembled from the blocks (written atomically).
        num_classes: K.
        class_ids: Class id of each output channel.
        colormap: Class id -> ``#rrggbb``.
        confidence_path: Optional confidence map (``.vrt`` or COG, like ``dst_path``).
        blocks_dir: Folder of block files and the manifest (default ``<dst_path>.blocks``); a
            rerun with the same folder and settings resumes.
        model_id: Identity of the model (e.g. weights checksum + runtime) stored in the manifest,
            so that a resume with another model is refused.
        policy: How the model runs (:func:`core.inference.policy.plan_run` for the whole input): tile,
            overlap, batch size; a full-frame policy makes one block of the whole input.
        block_size: Wanted block side in pixels (rounded to a multiple of ``tile - overlap``).
        workers: Worker processes of the local cluster (default: CPU cores).
        threads_per_worker: Dask threads per local worker (1: one block at a time per worker;
            intra-op threads of the network are the factory's business).
        processes: Local workers as processes (True) or threads in this process (False).
        scheduler: Address of an existing scheduler (``tcp://host:8786``); its workers must see
            the input and the blocks folder at the same paths (a shared file system).
        client: An existing ``distributed.Client`` (overrides ``scheduler``/``workers``).
        retries: Extra attempts for a failing block before the run gives up.
        progress: Called with (blocks finished, blocks total), skipped blocks included.
        log: Called with one-line messages (failures, retries); default: nothing.

    Returns:
        A :class:`DistributedResult`.

    Raises:
        BlockFailedError: Some blocks failed ``retries + 1`` times; finished blocks are kept and
            recorded, nothing is written at ``dst_path``.
        ManifestMismatchError: ``blocks_dir`` holds a run with other settings.
        OutputError: An output path is the input or cannot be written (checked before any work).
        BandError, RasterReadError: Bad input.
    """
    t0 = time.perf_counter()
    log = log or (lambda _msg: None)
    outs = check_outputs({"output": dst_path, "confidence output": confidence_path}, source.input_paths)
    dst_path = outs["output"]
    confidence_path = outs.get("confidence output")
    info = source.describe()
    height, width = info["height"], info["width"]
    tile, overlap = policy.tile, policy.overlap
    bs, blocks = plan_blocks(height, width, block_size=block_size, tile=tile, overlap=overlap, full_frame=policy.full_frame)
    blocks_dir = Path(blocks_dir) if blocks_dir else dst_path.with_name(dst_path.name + ".blocks")
    blocks_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "input": info, "bands": list(source.bands), "model": model_id, "tile": tile, "overlap": overlap,
        "full_frame": policy.full_frame,
        "block_size": bs, "num_classes": num_classes, "class_ids": list(class_ids) if class_ids is not None else None,
        "confidence": confidence_path is not None, "input_decision": source.tags(),
    }
    manifest_path = blocks_dir / MANIFEST_NAME
    manifest = _load_manifest(manifest_path, settings)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    result = DistributedResult(output=dst_path, confidence=Path(confidence_path) if confidence_path else None,
                               blocks_dir=blocks_dir, block_size=bs, n_blocks=len(blocks))
    by_key = {b.key: b for b in blocks}

    def finished(b: Block) -> bool:
        cls_path, conf_path = _block_paths(blocks_dir, b)
        return b.key in manifest["blocks"] and cls_path.exists() and (confidence_path is None or conf_path.exists())

    todo = [b for b in blocks if not finished(b)]
    result.skipped = [b.key for b in blocks if b.key not in {t.key for t in todo}]
    done = len(result.skipped)
    if progress:
        progress(done, len(blocks))
    if todo:
        own_cluster = None
        if client is None:
            client, own_cluster = _open_client(scheduler, workers, threads_per_worker, processes)
        try:
            from distributed import as_completed

            kwargs = {"num_classes": num_classes, "class_ids": class_ids, "colormap": colormap,
                      "confidence": confidence_path is not None}

            def submit(b: Block, attempt: int):
                fut = client.submit(predict_block, b, source, forward_factory, str(blocks_dir), policy, pure=False,
                                    key=f"lulc-block-{b.key}-{attempt}-{os.getpid()}-{time.monotonic_ns()}", **kwargs)
                attempts[fut.key] = (b.key, attempt)
                return fut

            attempts: dict[str, tuple[str, int]] = {}
            pending = as_completed([submit(b, 1) for b in todo])
            failed: list[str] = []
            for fut in pending:
                key, attempt = attempts.pop(fut.key)
                if fut.status == "finished":
                    stats = fut.result()
                    result.computed.append(key)
                    result.stats.append(stats)
                    manifest["blocks"][key] = {"window": [by_key[key].y0, by_key[key].x0, by_key[key].height, by_key[key].width],
                                               "seconds": stats["seconds"]}
                    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
                    done += 1
                    if progress:
                        progress(done, len(blocks))
                else:
                    exc = fut.exception()
                    msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                    result.failures.append((key, attempt, msg))
                    if attempt <= retries:
                        log(f"block {key} failed (attempt {attempt} of {retries + 1}): {msg}; retrying")
                        pending.add(submit(by_key[key], attempt + 1))
                    else:
                        log(f"block {key} failed (attempt {attempt} of {retries + 1}): {msg}; giving up")
                        failed.append(key)
                fut.release()
        finally:
            if own_cluster is not None:
                client.close()
                own_cluster.close()
        if failed:
            raise BlockFailedError(
                f"{len(failed)} of {len(blocks)} block(s) failed after {retries + 1} attempts ({', '.join(sorted(failed)[:5])}"
                f"{', ...' if len(failed) > 5 else ''}: {result.failures[-1][2]}); the {done} finished blocks are kept in "
                f"{blocks_dir}: run the same command again to redo only the missing ones"
            )
    _assemble(blocks, blocks_dir, info, colormap, dst_path, confidence_path, source.tags())
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _assemble(blocks: Sequence[Block], blocks_dir: Path, info: dict, colormap, dst_path: Path, confidence_path, tags) -> None:
    """Write the VRT(s) of the finished blocks and, unless a .vrt was asked for, the COG(s)."""
    grid = {"height": info["height"], "width": info["width"], "crs_wkt": info["crs"], "transform": info["transform"]}
    outputs = [(dst_path, "classes.vrt", "", "uint8", NODATA_CLASS, "class", colormap, "nearest")]
    if confidence_path:
        outputs.append((Path(confidence_path), "confidence.vrt", "_conf", "float32", 0.0, "confidence", None, "average"))
    for dst, vrt_name, suffix, dtype, nodata, desc, cmap, resampling in outputs:
        vrt = blocks_dir / vrt_name
        write_vrt(vrt, blocks, [f"{b.key}{suffix}.tif" for b in blocks], dtype=dtype, nodata=nodata,
                  description=desc, colormap=cmap, tags=tags, **grid)
        if dst.suffix.lower() == ".vrt":
            if dst.resolve() != vrt.resolve():
                rel = os.path.relpath(blocks_dir, dst.parent)
                text = vrt.read_text().replace('relativeToVRT="1">', f'relativeToVRT="1">{rel}/')
                atomic_write_text(dst, text)
            continue
        with rasterio.Env(GDAL_CACHEMAX=64), atomic_path(dst) as tmp:
            rasterio.shutil.copy(vrt, tmp, overview_resampling=resampling, **_COG_OPTIONS)


def block_grid_summary(height: int, width: int, *, block_size: int, tile: int, overlap: int, full_frame: bool = False) -> dict:
    """Blocks, block side and the halo's extra tiles for a grid (for messages and benchmarks).

    Returns:
        ``{"block_size", "n_blocks", "tiles_blocks", "tiles_single", "halo_overhead"}``:
        tiles computed over all blocks vs. one single-process pass.
    """
    bs, blocks = plan_blocks(height, width, block_size=block_size, tile=tile, overlap=overlap, full_frame=full_frame)
    if full_frame:
        return {"block_size": bs, "n_blocks": 1, "tiles_blocks": 1, "tiles_single": 1, "halo_overhead": 1.0}
    tiles = sum(TileGrid(b.rheight, b.rwidth, tile, overlap).n_tiles for b in blocks)
    single = TileGrid(height, width, tile, overlap).n_tiles
    return {"block_size": bs, "n_blocks": len(blocks), "tiles_blocks": tiles, "tiles_single": single,
            "halo_overhead": round(tiles / single, 4) if single else math.nan}

