"""Commands for large areas and other runtimes: ``predict --engine dask`` and ``export-onnx``.

``predict --engine dask`` cuts the output into blocks and predicts them as Dask tasks on a
``LocalCluster`` (one worker process per core by default) or on an existing cluster
(``--scheduler tcp://host:8786``); see :mod:`core.inference.blocks`. Rerunning the same command
resumes: only blocks missing from the manifest are predicted.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from core.classes import get_scheme
from core.inference.blocks import RasterSource, block_grid_summary, predict_distributed
from core.inference.policy import input_for_file, model_decision, plan_run
from core.io.outputs import check_outputs
from models.bundle import read_card
from models.runtimes import ForwardFactory, bundle_checksum, export_onnx, onnx_path_for
from trainer.progress import tqdm_progress

__all__ = ["predict_dask", "export_onnx_command", "earth_engine_source", "parse_aoi_bounds"]


def parse_aoi_bounds(aoi: str) -> tuple[float, float, float, float]:
    """An AOI given on the command line as ``W,S,E,N`` degrees or a GeoJSON file, as lon/lat bounds.

    Raises:
        AOIError: Not four numbers in range with W < E and S < N (:func:`core.aoi.parse_bbox`), or an
            unreadable/invalid GeoJSON file.
    """
    from core.aoi import parse_bbox, parse_geojson
    from core.errors import AOIError

    p = Path(aoi)
    if p.suffix.lower() in (".geojson", ".json") or p.exists():
        try:
            return tuple(parse_geojson(p.read_text()).bounds)
        except OSError as exc:
            raise AOIError(f"cannot read the AOI file {aoi}: {exc.strerror or exc}") from None
    return tuple(parse_bbox(aoi).bounds)


def earth_engine_source(card, aoi: str, start: str, end: str, *, adapter_factory=None, cloud_threshold: float | None = None,
                        cache_dir: str | None = None):
    """The Earth Engine input of ``predict --engine dask``: a Sentinel-2 composite on the AOI's UTM 10 m grid.

    The processing level is the card's (first of ``card.levels``, else L1C). How the bands become
    model input is decided once, here, from a coarse (at most 256 x 256 px) fetch of the whole AOI,
    which also surfaces credential and empty-collection problems before any cluster starts.

    Args:
        card: The model card (bands, levels).
        aoi: ``W,S,E,N`` degrees or a GeoJSON file.
        start: First date (ISO).
        end: Last date (ISO, inclusive).
        adapter_factory: Zero-argument picklable callable returning the adapter (default
            :class:`core.sources.earth_engine.LiveEarthEngine`, configured from the environment).
        cloud_threshold: Cloud Score+ threshold.
        cache_dir: Download cache folder (shared by the workers).

    Returns:
        :class:`core.inference.blocks.EarthEngineSource`.

    Raises:
        AOIError: Bad AOI. EarthEngineError: Credentials, dates, quota, empty collection.
        BandError: The model needs Sentinel-1 bands (this mode fetches Sentinel-2 only).
    """
    from core.errors import BandError
    from core.inference.blocks import EarthEngineSource
    from core.sources.earth_engine import (
        LiveEarthEngine,
        PixelGrid,
        download,
        input_decision,
        model_level,
        sentinel2_spec,
        utm_grid,
    )

    adapter_factory = adapter_factory or LiveEarthEngine
    radar = [b for b in card.bands if b in ("VV", "VH")]
    if radar:
        raise BandError(f"the model needs Sentinel-1 band(s) {', '.join(radar)}; --engine dask with --aoi fetches Sentinel-2 only")
    grid = utm_grid(parse_aoi_bounds(aoi))
    level = model_level(card)
    spec = sentinel2_spec(start, end, list(card.bands), level=level, cloud_threshold=cloud_threshold)
    f = max(1, -(-max(grid.width, grid.height) // 256))
    a, b, c, d, e, g = grid.transform
    coarse = PixelGrid(grid.crs, (a * f, b, c, d, e * f, g), -(-grid.width // f), -(-grid.height // f))
    sample = download(adapter_factory(), spec, coarse, cache_dir=cache_dir)
    decision = model_decision(card, input_decision(sample, card, level, what=f"the Earth Engine {level} composite {start}..{end}"))
    return EarthEngineSource(grid, spec, tuple(card.bands), adapter_factory, decision, cache_dir)


def predict_dask(
    checkpoint: str,
    src: str | None,
    dst: str,
    *,
    aoi: str | None = None,
    start: str | None = None,
    end: str | None = None,
    adapter_factory=None,
    cache_dir: str | None = None,
    confidence: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    runtime: str = "torch",
    workers: int | None = None,
    scheduler: str | None = None,
    block_size: int = 4096,
    blocks_dir: str | None = None,
    retries: int = 2,
    offset: str | int | None = "auto",
    bands: Sequence[str] | None = None,
) -> Path:
    """Predict a large GeoTIFF/VRT block by block on Dask and write a COG (or a VRT).

    Args:
        checkpoint: Bundle folder (workers load it from the same path).
        src: Input GeoTIFF or VRT; band names as for ``predict`` (descriptions or ``bands``);
            ``None`` with ``aoi``.
        aoi: Instead of ``src``: ``W,S,E,N`` degrees or a GeoJSON file; each block is fetched from
            Earth Engine (Sentinel-2 composite ``start``..``end``) by the worker that predicts it.
        start: First date of the composite (with ``aoi``).
        end: Last date, inclusive (with ``aoi``).
        adapter_factory: Earth Engine adapter factory (default ``LiveEarthEngine``; tests give a fake).
        cache_dir: Earth Engine download cache (default none).
        dst: Output class map: a COG, or a ``.vrt`` mosaic of the block COGs.
        confidence: Optional confidence map (COG or ``.vrt``).
        tile: Tile side in pixels (multiple of 32); default the run policy's (:func:`core.inference.policy.plan_run`).
        overlap: Overlap between tiles in pixels (<= tile / 2); default the run policy's.
        batch_size: Tiles per forward call; default the run policy's.
        precision: ``fp32`` (default, the reference) or ``bf16`` (torch runtime).
        runtime: ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` (measured once on this machine).
        workers: Local worker processes (default: CPU cores); ignored with ``scheduler``.
        scheduler: Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
        block_size: Block side in pixels (rounded to a multiple of ``tile - overlap``).
        blocks_dir: Folder of block files and manifest (default ``<dst>.blocks``).
        retries: Extra attempts per failing block.
        offset: ``"auto"``, 0 or 1000 (see :mod:`core.inputs.decision`).
        bands: Names of the input's bands in file order, overriding its descriptions.

    Returns:
        ``dst``.

    Raises:
        OutputError, BandError, InputError, RasterReadError, AOIError: Bad input or output (before any work).
        EarthEngineError: Credentials, quota, permission, dates or an empty collection (with ``aoi``).
        BlockFailedError: Blocks failed on every attempt (finished blocks are kept for a rerun).
        ManifestMismatchError: The blocks folder belongs to a run with other settings.
    """
    if (src is None) == (aoi is None):
        raise ValueError("give either an input file or an AOI (--aoi with --start and --end)")
    if aoi is not None and not (start and end):
        raise ValueError("--aoi needs --start and --end (YYYY-MM-DD)")
    check_outputs({"--output": dst, "--confidence": confidence}, [src] if src else [])
    ckpt = str(Path(checkpoint).resolve())
    card = read_card(ckpt)
    if aoi is not None:
        source = earth_engine_source(card, aoi, start, end, adapter_factory=adapter_factory, cache_dir=cache_dir)
        decision = source.decision
        print(f"Earth Engine {source.spec.title} {start}..{end}, {source.grid.width} x {source.grid.height} px on "
              f"{source.grid.crs} (10 m): {decision.summary()}")
    else:
        decision = model_decision(card, input_for_file(src, card, bands=bands, offset=offset))
        source = RasterSource(str(src), tuple(card.bands), decision)
        print(f"{Path(src).name}: {decision.summary()}")
    info = source.describe()
    policy = plan_run(card, info["height"], info["width"], decision=source.decision, tile=tile, overlap=overlap,
                      batch_size=batch_size, precision=precision, runtime=runtime)
    for w in policy.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if runtime == "auto":
        from trainer.commands import resolve_runtime

        runtime, precision = resolve_runtime(ckpt, precision)  # large inputs: measuring pays
        policy = dataclasses.replace(policy, runtime=runtime, precision=precision)
    onnx_path = str(onnx_path_for(ckpt)) if runtime in ("onnxruntime", "openvino") else None
    n_workers = workers or os.cpu_count() or 1
    threads = None if scheduler else max(1, (os.cpu_count() or 1) // n_workers)
    factory = ForwardFactory(ckpt, runtime=runtime, precision=precision, threads=threads, onnx_path=onnx_path)
    grid = block_grid_summary(info["height"], info["width"], block_size=block_size, tile=policy.tile, overlap=policy.overlap,
                              full_frame=policy.full_frame)
    where = f"the cluster at {scheduler}" if scheduler else f"a local cluster of {n_workers} worker process(es), {threads} thread(s) each"
    print(f"{grid['n_blocks']} block(s) of {grid['block_size']} px on {where}; run: {policy.summary()}; "
          f"halo tiles add {100 * (grid['halo_overhead'] - 1):.0f} %")
    scheme = get_scheme(card.scheme_name)
    with tqdm(total=grid["n_blocks"], unit="block", desc="predict (dask)") as bar:
        res = predict_distributed(
            source, factory, dst, num_classes=card.num_classes,
            class_ids=[int(c["id"]) for c in card.classes["classes"]], colormap=scheme.colormap(),
            confidence_path=confidence, blocks_dir=blocks_dir, model_id=f"{bundle_checksum(ckpt)}/{runtime}/{precision}",
            policy=policy, block_size=block_size, workers=n_workers,
            scheduler=scheduler, retries=retries, progress=tqdm_progress(bar), log=lambda m: tqdm.write(m, file=sys.stderr),
        )
    if res.skipped:
        print(f"resumed: {len(res.skipped)} block(s) were already done, {len(res.computed)} predicted now")
    print(f"wrote {res.output}" + (f" and {res.confidence}" if res.confidence else "") + f" (blocks and manifest in {res.blocks_dir})")
    return res.output


def export_onnx_command(checkpoint: str, output: str | None = None) -> Path:
    """Export a bundle to ONNX (default ``<checkpoint>/model.onnx``) and print what was written.

    Returns:
        The ONNX file.

    Raises:
        BundleError: The bundle cannot be loaded.
        OutputError: The output cannot be written.
    """
    out = Path(output) if output else Path(checkpoint) / "model.onnx"
    check_outputs({"--output": out}, [Path(checkpoint) / "model.safetensors", Path(checkpoint) / "card.json"])
    path = export_onnx(checkpoint, out)
    card = read_card(checkpoint)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input 'bands' float32 (B, {len(card.bands)}, H, W) raw "
          f"{','.join(card.bands)}; output 'logits' (B, {card.num_classes}, H, W); card in the ONNX metadata")
    return path
