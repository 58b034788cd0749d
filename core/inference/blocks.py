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
stays flat; :mod:`core.inference.block_mosaic`). The assembled map carries the run's tags (input
decision and, when given, provenance) and, with class names, a raster attribute table: in the
COG's ``.aux.xml`` sidecar, or inside a ``.vrt`` output's band (:func:`add_class_table`).

Blocks read their pixels from a block source (:mod:`core.inference.block_sources`): a GeoTIFF/VRT
(:class:`RasterSource`) or an Earth Engine request fetched block by block (:class:`EarthEngineSource`).

The forward pass is made on each worker from a zero-argument, picklable ``forward_factory``
(for example :class:`models.runtimes.ForwardFactory`) and cached per worker process, so the model
is loaded once per worker, not once per block. ``core`` never imports torch: the factory is given
by the caller.

A local cluster gets at most one worker per block to do (:func:`local_workers`); when that is one
worker, no cluster is started and the blocks run in the calling process with the same manifest,
retries and files. On the 2-core development machine a 2048 x 2048 input (one block at the default
4096 px) took 1.8-2.2x the streaming run's wall time through a 2-worker LocalCluster (worker
start-up, a second torch import and model load, one worker idle and the other on 1 thread), and
about the streaming run's time in-process (``docs/benchmarks/peers.md``).
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from core.errors import LulcError
from core.inference.block_mosaic import BLOCK_COG_OPTIONS, assemble
from core.inference.block_sources import EarthEngineSource, RasterSource, made_once
from core.inference.policy import RunPolicy
from core.inference.streaming import NODATA_CLASS, _class_lut
from core.inference.tiling import ForwardFn, TileGrid
from core.io.outputs import atomic_path, atomic_write_text, check_outputs
from core.io.raster import _colormap_arg, class_table_xml, write_class_table

__all__ = [
    "DaskBlock",
    "block_grid_summary",
    "BlockFailedError",
    "DistributedResult",
    "ManifestMismatchError",
    "plan_blocks",
    "predict_block",
    "predict_distributed",
    "add_class_table",
    "local_workers",
    "MANIFEST_NAME",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "lulc-explorer/blocks/1"


class BlockFailedError(LulcError):
    """Some blocks failed on every attempt; the finished ones are kept for a resumed run."""


class ManifestMismatchError(LulcError):
    """The blocks folder holds a run with other settings (input, model, tile, block size)."""


@dataclass(frozen=True)
class DaskBlock:
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
                full_frame: bool = False) -> tuple[int, list[DaskBlock]]:
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
        return max(height, width), [DaskBlock(0, 0, 0, 0, height, width, 0, 0, height, width)]
    s = grid.stride
    bs = max(1, round(block_size / s)) * s
    before = s if overlap > 0 else 0
    blocks = []
    for i, y0 in enumerate(range(0, height, bs)):
        for j, x0 in enumerate(range(0, width, bs)):
            h, w = min(bs, height - y0), min(bs, width - x0)
            ry0, rx0 = max(0, y0 - before), max(0, x0 - before)
            ry1, rx1 = min(height, y0 + h + overlap), min(width, x0 + w + overlap)
            blocks.append(DaskBlock(i, j, y0, x0, h, w, ry0, rx0, ry1 - ry0, rx1 - rx0))
    return bs, blocks


def _block_paths(out_dir: Path, block: DaskBlock) -> tuple[Path, Path]:
    return out_dir / f"{block.key}.tif", out_dir / f"{block.key}_conf.tif"


def predict_block(
    block: DaskBlock,
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
    forward: ForwardFn | None = None,
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
        forward: The forward pass already made from ``forward_factory`` (the in-process runner makes it once);
            None: made once per process from the factory (:func:`core.inference.block_sources.made_once`).

    Returns:
        ``{"key", "seconds", "tiles", "peak_rss_mb", "pid"}``; peak RSS is the worker process's
        high-water mark so far (``getrusage``, MiB).

    Raises:
        BandError, RasterReadError: Bad input. Any error of the forward pass propagates; nothing
        is left at the block's paths in that case.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    forward = forward if forward is not None else made_once(forward_factory)
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
        with atomic_path(conf_path) as tmp, rasterio.open(tmp, "w", dtype="float32", nodata=0.0, **base, **BLOCK_COG_OPTIONS) as dst:
            dst.write(conf, 1)
            dst.descriptions = ("confidence",)
            dst.update_tags(**source.tags())
    with atomic_path(cls_path) as tmp, rasterio.open(tmp, "w", dtype="uint8", nodata=NODATA_CLASS, **base, **BLOCK_COG_OPTIONS) as dst:
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


def local_workers(workers: int | None, n_blocks: int) -> int:
    """Worker processes a local cluster gets: ``workers`` (default: CPU cores), at most one per block to do.

    A worker without a block would only cost start-up time and the threads the factory divides
    among workers; with one worker left, :func:`predict_distributed` runs the blocks in this process.

    Args:
        workers: Asked for (``--workers``); None: ``os.cpu_count()``.
        n_blocks: Blocks to predict.

    Returns:
        At least 1.
    """
    return max(1, min(workers or os.cpu_count() or 1, n_blocks))


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
    tags: Mapping[str, str] | None = None,
    class_names: Mapping[int, str] | None = None,
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
        workers: Worker processes of the local cluster (default: CPU cores), at most one per block to do
            (:func:`local_workers`). When that leaves one worker (one block, or ``workers=1``), the blocks run
            in this process, one after another, with the same manifest and retries: no cluster is started
            (on a 2-core machine its start-up, a second torch import and model load cost about 7 s).
        threads_per_worker: Dask threads per local worker (1: one block at a time per worker;
            intra-op threads of the network are the factory's business).
        processes: Local workers as processes (True) or threads in this process (False).
        scheduler: Address of an existing scheduler (``tcp://host:8786``); its workers must see
            the input and the blocks folder at the same paths (a shared file system).
        client: An existing ``distributed.Client`` (overrides ``scheduler``/``workers``).
        retries: Extra attempts for a failing block before the run gives up.
        progress: Called with (blocks finished, blocks total), skipped blocks included.
        log: Called with one-line messages (failures, retries); default: nothing.
        tags: More dataset tags of the assembled outputs (e.g. the run's provenance), after the input
            decision's; not part of the manifest's settings (a resumed run may record a new time).
        class_names: Class id -> name. With ``colormap``: a raster attribute table (id, name, RGBA)
            of the assembled class map (:func:`add_class_table`).

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
    bs, blocks = plan_blocks(info["height"], info["width"], block_size=block_size, tile=policy.tile, overlap=policy.overlap,
                             full_frame=policy.full_frame)
    blocks_dir = Path(blocks_dir) if blocks_dir else dst_path.with_name(dst_path.name + ".blocks")
    blocks_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "input": info, "bands": list(source.bands), "model": model_id, "tile": policy.tile, "overlap": policy.overlap,
        "full_frame": policy.full_frame,
        "block_size": bs, "num_classes": num_classes, "class_ids": list(class_ids) if class_ids is not None else None,
        "confidence": confidence_path is not None, "input_decision": source.tags(),
    }
    manifest = _Manifest(blocks_dir / MANIFEST_NAME, settings)
    result = DistributedResult(output=dst_path, confidence=Path(confidence_path) if confidence_path else None,
                               blocks_dir=blocks_dir, block_size=bs, n_blocks=len(blocks))
    todo = [b for b in blocks if not manifest.finished(b, confidence=confidence_path is not None)]
    result.skipped = [b.key for b in blocks if b.key not in {t.key for t in todo}]
    if progress:
        progress(len(result.skipped), len(blocks))
    if todo:
        kwargs = {"num_classes": num_classes, "class_ids": class_ids, "colormap": colormap,
                  "confidence": confidence_path is not None}
        args = (source, forward_factory, str(blocks_dir), policy)
        if client is None and scheduler is None and local_workers(workers, len(todo)) == 1:
            # one worker would have all the work: no cluster (worker start-up, a second torch import and model load)
            failed = _run_blocks_here(args, kwargs, todo, blocks, manifest, result, retries=retries, progress=progress, log=log)
        else:
            own_cluster = None
            if client is None:
                client, own_cluster = _open_client(scheduler, local_workers(workers, len(todo)), threads_per_worker, processes)
            try:
                tasks = _BlockTasks(client, args, kwargs)
                failed = _run_blocks(tasks, todo, blocks, manifest, result, retries=retries, progress=progress, log=log)
            finally:
                if own_cluster is not None:
                    client.close()
                    own_cluster.close()
        if failed:
            done = len(result.skipped) + len(result.computed)
            raise BlockFailedError(
                f"{len(failed)} of {len(blocks)} block(s) failed after {retries + 1} attempts ({', '.join(sorted(failed)[:5])}"
                f"{', ...' if len(failed) > 5 else ''}: {result.failures[-1][2]}); the {done} finished blocks are kept in "
                f"{blocks_dir}: run the same command again to redo only the missing ones"
            )
    assemble(blocks, blocks_dir, info, colormap, dst_path, confidence_path, {**source.tags(), **(tags or {})})
    if class_names is not None and colormap:
        add_class_table(dst_path, {int(k): (class_names.get(int(k), f"class_{int(k)}"), c) for k, c in colormap.items()})
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def add_class_table(path: str | Path, classes: Mapping[int, tuple[str, str]]) -> Path:
    """Give an assembled class map its raster attribute table.

    A COG gets the PAM sidecar ``<name>.aux.xml`` (:func:`core.io.raster.write_class_table`); a ``.vrt``
    (which GDAL does not pair with a sidecar) gets the ``<GDALRasterAttributeTable>`` inside its
    ``<VRTRasterBand>``, rewritten atomically. No pixel counts: the blocks are not read again.

    Args:
        path: The class map (COG or VRT) as :func:`predict_distributed` wrote it.
        classes: Class id -> (name, ``#rrggbb``).

    Returns:
        The file that now holds the table.
    """
    path = Path(path)
    if path.suffix.lower() != ".vrt":
        return write_class_table(path, classes)
    text = path.read_text()
    if "<GDALRasterAttributeTable" in text:
        start, end = text.index("    <GDALRasterAttributeTable"), text.index("</GDALRasterAttributeTable>") + len("</GDALRasterAttributeTable>\n")
        text = text[:start] + text[end:]
    at = text.index("    <SimpleSource>") if "    <SimpleSource>" in text else text.index("  </VRTRasterBand>")
    return atomic_write_text(path, text[:at] + class_table_xml(classes) + "\n" + text[at:])


class _Manifest:
    """The run's manifest in the blocks folder: its settings and the finished blocks, rewritten atomically."""

    def __init__(self, path: Path, settings: dict) -> None:
        self.path = path
        self.data = _load_manifest(path, settings)
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1))

    def finished(self, block: DaskBlock, *, confidence: bool) -> bool:
        """Recorded and its file(s) present (a block file without an entry is redone)."""
        cls_path, conf_path = _block_paths(self.path.parent, block)
        return block.key in self.data["blocks"] and cls_path.exists() and (not confidence or conf_path.exists())

    def record(self, block: DaskBlock, seconds: float) -> None:
        self.data["blocks"][block.key] = {"window": [block.y0, block.x0, block.height, block.width], "seconds": seconds}
        self.save()


@dataclass
class _BlockTasks:
    """Submits :func:`predict_block` tasks and remembers the block and attempt of each future."""

    client: object
    args: tuple
    kwargs: dict
    attempts: dict[str, tuple[str, int]] = field(default_factory=dict)

    def submit(self, block: DaskBlock, attempt: int):
        fut = self.client.submit(predict_block, block, *self.args, pure=False,
                                 key=f"lulc-block-{block.key}-{attempt}-{os.getpid()}-{time.monotonic_ns()}", **self.kwargs)
        self.attempts[fut.key] = (block.key, attempt)
        return fut


def _run_blocks(tasks: _BlockTasks, todo: Sequence[DaskBlock], blocks: Sequence[DaskBlock], manifest: _Manifest,
                result: DistributedResult, *, retries: int, progress, log) -> list[str]:
    """Run the blocks to do, retrying failures up to ``retries`` times; record each finished one at once.

    Returns:
        Keys of the blocks that failed on every attempt.
    """
    from distributed import as_completed

    by_key = {b.key: b for b in blocks}
    pending = as_completed([tasks.submit(b, 1) for b in todo])
    failed: list[str] = []
    for fut in pending:
        key, attempt = tasks.attempts.pop(fut.key)
        if fut.status == "finished":
            _block_done(by_key[key], fut.result(), result, manifest, len(blocks), progress)
        elif _block_failed(key, attempt, fut.exception(), result, retries, log):
            failed.append(key)
        else:
            pending.add(tasks.submit(by_key[key], attempt + 1))
        fut.release()
    return failed


def _block_done(block: DaskBlock, stats: dict, result: DistributedResult, manifest: _Manifest, n_blocks: int, progress) -> None:
    """Record a finished block at once (result, manifest) and report the progress over all ``n_blocks``."""
    result.computed.append(block.key)
    result.stats.append(stats)
    manifest.record(block, stats["seconds"])
    if progress:
        progress(len(result.skipped) + len(result.computed), n_blocks)


def _block_failed(key: str, attempt: int, exc: BaseException, result: DistributedResult, retries: int, log) -> bool:
    """Record a failed attempt and log it; True when it was the last allowed one (the block is given up)."""
    msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    result.failures.append((key, attempt, msg))
    last = attempt > retries
    log(f"block {key} failed (attempt {attempt} of {retries + 1}): {msg}; {'giving up' if last else 'retrying'}")
    return last


def _run_blocks_here(args: tuple, kwargs: dict, todo: Sequence[DaskBlock], blocks: Sequence[DaskBlock], manifest: _Manifest,
                     result: DistributedResult, *, retries: int, progress, log) -> list[str]:
    """:func:`_run_blocks` without Dask: the blocks one after another in this process, with the same retries and manifest.

    Returns:
        Keys of the blocks that failed on every attempt.
    """
    failed: list[str] = []
    forward = None
    for block in todo:
        for attempt in range(1, retries + 2):
            try:
                if forward is None:
                    forward = args[1]()  # the factory's forward, made once here (a failed load is retried like a block)
                stats = predict_block(block, *args, forward=forward, **kwargs)
            except Exception as exc:  # noqa: BLE001 - as a Dask task's error: recorded, retried, then reported
                if _block_failed(block.key, attempt, exc, result, retries, log):
                    failed.append(block.key)
                continue
            _block_done(block, stats, result, manifest, len(blocks), progress)
            break
    return failed


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

