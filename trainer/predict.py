"""Prediction work of ``python -m trainer predict``: one GeoTIFF, many, or one large input on Dask.

* :func:`predict`: one GeoTIFF, window by window, to a class-map COG (and confidence and
  per-class probability COGs).
* :func:`predict_many`: files and folders with one model load and one progress bar, and a STAC
  Catalog (``catalog.json``) of the maps' Items.
* :func:`predict_dask` (``--engine dask``): the output cut into blocks predicted as Dask tasks on
  a ``LocalCluster`` (one worker process per core by default) or on an existing cluster
  (``--scheduler tcp://host:8786``); see :mod:`core.inference.blocks`. Rerunning the same command
  resumes: only blocks missing from the manifest are predicted. With ``--aoi`` the blocks are
  fetched from Earth Engine (:func:`earth_engine_source`).
* :func:`resolve_runtime` / :func:`forward_for` (``--runtime auto``): the fastest runtime that
  reproduces PyTorch fp32, measured once per machine and bundle.

How an input is read and how the model runs are decided by :mod:`core.inference.policy`
(:func:`~core.inference.policy.input_for_file`, :func:`~core.inference.policy.plan_run`), the same
policy as the app's.

Every class map comes with its sidecars (:func:`finish_outputs`): the raster attribute table
naming the classes (``<name>.tif.aux.xml``), QGIS styles (``<stem>.qml``), and a STAC Item
(``<stem>.json``) with the run's provenance, which is also in the COGs' tags
(:mod:`core.products.provenance`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from core.classes import ClassScheme, scheme_of
from core.inference.policy import RunPolicy, input_for_file, model_decision, plan_run
from core.inference.streaming import predict_geotiff
from core.io.guards import DEFAULT_MAX_PIXELS, check_gsd, check_size
from core.io.outputs import check_outputs
from core.io.raster import raster_info, scheme_classes
from core.products.provenance import Provenance, run_provenance
from core.products.stac import write_catalog, write_map_sidecars
from core.sources.downloads import is_download_product, resolve_input
from models.bundle import Bundle, load_bundle, read_card
from trainer.progress import tqdm_progress

__all__ = ["predict", "predict_many", "expand_inputs", "predict_dask", "earth_engine_source", "parse_aoi_bounds",
           "resolve_runtime", "forward_for", "read_decision_tags", "finish_outputs", "AUTO_MEASURE_MIN_TILES"]

AUTO_MEASURE_MIN_TILES = 64
"""``--runtime auto`` measures the runtimes (10-30 s once per machine and bundle) only for inputs of
at least this many tiles (about 2000 x 2000 px at tile 256), where it pays; smaller inputs use a
cached measurement if there is one, else PyTorch."""

RASTER_SUFFIXES = (".tif", ".tiff")


def resolve_runtime(checkpoint: str | Path, precision: str = "auto", *, measure: bool = True,
                    quiet: bool = False) -> tuple[str, str]:
    """``--runtime auto``: the fastest usable runtime and precision measured on this machine (cached).

    See :func:`models.runtimes.choose_runtime`. Without a cached measurement and with ``measure``
    False: PyTorch at ``precision`` (fp32 for ``"auto"``: the reference, since bf16 changes some
    labels and is not faster on every CPU with bf16 instructions). Prints the choice unless ``quiet``.
    """
    from models.runtimes import choose_runtime

    got = choose_runtime(checkpoint, measure=measure)
    if got is None:
        precision = "fp32" if precision == "auto" else precision  # the reference, until a measurement says otherwise
        if not quiet:
            print(f"runtime auto: torch {precision} (no measurement on this machine yet; an input of at least "
                  f"{AUTO_MEASURE_MIN_TILES} tiles or --engine dask measures and caches one)")
        return "torch", precision
    runtime, chosen, rows = got
    if not quiet:
        table = ", ".join(f"{r['runtime']} {r['precision']} {r['images_s']:.2f} img/s" + ("" if r["usable"] else " (not chosen: does not reproduce fp32)")
                          for r in rows if "images_s" in r)
        print(f"runtime auto: {runtime} {chosen} (measured on this machine, cached: {table})")
    return runtime, chosen


def forward_for(bundle: Bundle, policy: RunPolicy, *, measure: bool = False, quiet: bool = False) -> tuple[object, RunPolicy]:
    """The forward pass a policy asks for, with ``runtime="auto"`` resolved (:func:`resolve_runtime`).

    Args:
        bundle: The loaded bundle (PyTorch).
        policy: From :func:`core.inference.policy.plan_run`.
        measure: With ``runtime="auto"``: measure the runtimes now if nothing is cached.
        quiet: Do not print the runtime choice.

    Returns:
        (forward callable, the policy with the runtime and precision that run).
    """
    runtime, precision = policy.runtime, policy.precision
    if runtime == "auto":  # after every input check: a refused input never costs a measurement
        runtime, precision = resolve_runtime(bundle.path, precision, measure=measure, quiet=quiet)
    policy = dataclasses.replace(policy, runtime=runtime, precision=precision)
    if getattr(bundle, "runtime", "torch") == runtime and bundle.precision == precision:
        return bundle, policy  # the bundle runs it when called (its card's runtime, as the policy named it)
    if runtime != "torch":
        from models.runtimes import load_forward

        return load_forward(bundle.path, runtime=runtime, precision=precision), policy
    return load_bundle(bundle.path, precision=precision, runtime="torch"), policy


def finish_outputs(dst: str | Path, scheme: ClassScheme, provenance: Provenance | None, *, confidence: str | Path | None = None,
                   probabilities: str | Path | None = None, sld: bool = False) -> Path:
    """Write the QGIS styles and the STAC Item of a finished class map (its RAT is written with the COG).

    See :func:`core.products.stac.write_map_sidecars`; returns the Item's path (``<stem>.json``).
    """
    return write_map_sidecars(dst, scheme_classes(scheme), provenance, confidence_path=confidence,
                              probabilities_path=probabilities, sld=sld)


def predict(checkpoint: str | Bundle, src: str, dst: str, *, confidence: str | None = None, probabilities: str | None = None,
            tile: int | None = None, overlap: int | None = None, batch_size: int | None = None, precision: str = "fp32",
            max_pixels: int = DEFAULT_MAX_PIXELS, offset: str | int | None = "auto", bands: Sequence[str] | None = None,
            progress: Callable[[int, int], None] | None = None, quiet: bool = False, runtime: str | None = None,
            sld: bool = False) -> Path:
    """Write a class-map COG (and optionally confidence and probability COGs) for a GeoTIFF, with its sidecars.

    How the input is read (band names and aliases, scale, +1000 offset, level, filled optional
    bands) is decided once by :func:`core.inference.policy.input_for_file`, how the model runs by
    :func:`core.inference.policy.plan_run` (the same policy as the app's); both are printed, and the
    input decision is written into the outputs' tags (``LULC_INPUT_*``), with the run's provenance
    (bundle name, weights SHA-256, software version, tile, overlap, runtime, precision:
    :meth:`core.products.provenance.Provenance.to_tags`). Beside ``dst``: the raster attribute
    table ``<name>.tif.aux.xml``, ``<stem>.qml`` (and the confidence's), and the STAC Item ``<stem>.json``.

    Args:
        checkpoint: Bundle folder, or an already loaded bundle (batch prediction loads it once).
        src: Input GeoTIFF; its band descriptions name its bands (aliases such as ``b02`` work), or
            ``bands`` does.
        dst: Output COG of class ids with the input's CRS/transform and the classes' colour table.
        confidence: Optional output COG of float32 confidence.
        probabilities: Optional output COG of the K class probabilities (uint8 ``round(p x 250)``, 255
            no data, bands named by class), written window by window.
        tile: Tile side in pixels (multiple of 32); default the card's (see :mod:`core.inference.policy`).
        overlap: Overlap between neighbouring tiles in pixels (<= tile / 2); default the card's.
        batch_size: Tiles per forward call; default :data:`core.inference.policy.DEFAULT_BATCH_SIZE`.
        precision: ``fp32`` (default, the reference) or ``bf16``.
        max_pixels: Refuse inputs with more pixels (H x W), read from the header before any work.
        offset: ``"auto"``, 0 or 1000: the radiometric offset of the input (see :mod:`core.inputs.decision`).
        bands: Names of the input's bands in file order (``--bands``), overriding its descriptions.
        progress: Called with (tiles done, tiles total) instead of a tile progress bar.
        quiet: Do not print the decision and the output paths.
        runtime: None (default): the card's (:func:`core.inference.policy.default_runtime`: PyTorch, or the ONNX
            runtime a card names, e.g. OpenVINO for the Dynamic World port, where installed); ``torch``,
            ``onnxruntime`` or ``openvino`` (:func:`models.runtimes.load_forward`), or
            ``auto``: the fastest one measured on this machine whose labels reproduce PyTorch fp32
            (:func:`resolve_runtime`; measured for inputs of at least :data:`AUTO_MEASURE_MIN_TILES` tiles).
        sld: Also write SLD styles beside the maps.

    Returns:
        ``dst``.

    Raises:
        OutputError, SizeLimitError, GsdError: Checked before the model runs (see
            :mod:`core.io.outputs`, :mod:`core.io.guards`).
        BandError, InputError: The input cannot be read as the model's input (see
            :func:`core.inputs.decision.decide`).
    """
    check_outputs({"--output": dst, "--confidence": confidence, "--probabilities": probabilities}, [src])
    name = Path(src).name  # messages name the user's file or product, never the cached VRT
    resolved = resolve_input(src)  # a SAFE product, Landsat C2 L2 scene or STAC Item -> a cached VRT; a GeoTIFF unchanged
    if not quiet and resolved.is_product:
        print(resolved.summary())
    src = str(resolved.path)
    info = raster_info(src)
    check_size(info, max_pixels=max_pixels, name=name, hint="crop it, or raise --max-megapixels")
    bundle = checkpoint if isinstance(checkpoint, Bundle) else load_bundle(checkpoint)
    check_gsd(info["crs"], info["transform"], info["height"], info["width"], bundle.card.gsd_m, name=name)
    decision = input_for_file(src, bundle.card, bands=bands, offset=offset)
    policy = plan_run(bundle.card, info["height"], info["width"], decision=decision, tile=tile, overlap=overlap,
                      batch_size=batch_size, precision=precision, runtime=runtime)
    if not quiet:
        print(f"{name}: {policy.decision.summary()}")
        for w in policy.warnings:
            print(f"warning: {w}", file=sys.stderr)
    forward, policy = forward_for(bundle, policy, measure=policy.n_tiles >= AUTO_MEASURE_MIN_TILES, quiet=quiet)
    if not quiet:
        print(f"run: {policy.summary()}")
    scheme = scheme_of(bundle.card)
    prov = (run_provenance(bundle.path, bundle.card.name, policy, input_path=src, input_name=name)  # the user's name, not the VRT's
            if bundle.path is not None else None)
    kwargs = dict(bands=bundle.bands, num_classes=bundle.num_classes, class_ids=bundle.class_ids, colormap=scheme.colormap(),
                  confidence_path=confidence, probabilities_path=probabilities, class_names=dict(zip(scheme.ids, scheme.names, strict=True)),
                  tags=prov.to_tags() if prov is not None else None)
    if progress is not None:
        out = predict_geotiff(src, dst, forward, policy, progress=progress, **kwargs)
    else:
        with tqdm(total=None, unit="tile", desc="predict") as bar:
            out = predict_geotiff(src, dst, forward, policy, progress=tqdm_progress(bar), **kwargs)
    item = finish_outputs(out, scheme, prov, confidence=confidence, probabilities=probabilities, sld=sld)
    if not quiet:
        extra = [str(p) for p in (confidence, probabilities) if p]
        print(f"wrote {out}" + (f" and {', '.join(extra)}" if extra else "") + f"; STAC Item {item}")
    return out


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Input files from paths and folders (a folder gives its ``*.tif``/``*.tiff``, sorted, not recursive).

    A Sentinel-2 ``.SAFE`` folder or a Landsat Collection 2 Level-2 scene folder is one input (a product), not a
    folder of files (:func:`core.sources.downloads.is_download_product`).

    Raises:
        FileNotFoundError: A path does not exist, or a folder holds no GeoTIFF.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if is_download_product(item):  # a SAFE product or Landsat scene folder is one input
            files.append(p)
        elif p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {p} holds no .tif/.tiff file")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    return list(dict.fromkeys(files))


def _output_folders(files: Sequence[Path], output: str, *extra: str | None) -> tuple[Path, ...]:
    """The output folder of :func:`predict_many` and its optional ones, created; refuses colliding output names.

    ``extra``: the confidence and probability folders (``None`` where not asked for, and returned as ``None``).
    """
    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--output {out_dir} is a file; with several inputs or a folder, --output must be a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    others = tuple(Path(d) if d else None for d in extra)
    for d in others:
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
    stems = [f.stem for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(f"several inputs are named {', '.join(dupes)}; their outputs would collide: predict them into different folders")
    return (out_dir, *others)


def predict_many(checkpoint: str, inputs: Sequence[str], output: str, *, confidence: str | None = None,
                 probabilities: str | None = None, tile: int | None = None,
                 overlap: int | None = None, batch_size: int | None = None, precision: str = "fp32", max_pixels: int = DEFAULT_MAX_PIXELS, offset: str | int | None = "auto",
                 bands: Sequence[str] | None = None, runtime: str | None = None, sld: bool = False) -> int:
    """Predict several GeoTIFFs (files and/or folders) with one model load and one progress bar.

    Writes ``<output>/<stem>_classes.tif`` with its sidecars and STAC Item ``<stem>_classes.json``
    (and ``<confidence>/<stem>_confidence.tif``, ``<probabilities>/<stem>_probabilities.tif``) per
    input, and ``<output>/catalog.json``: a STAC Catalog of the Items written (rewritten at the end).
    A file that fails is reported with its reason and the others go on.

    Args:
        checkpoint: Bundle folder (loaded once).
        inputs: Files and folders.
        output: Output folder (created).
        confidence: Optional folder for confidence COGs (may be ``output``).
        probabilities: Optional folder for probability COGs (may be ``output``).
        tile: Tile side in pixels, as in :func:`predict` (default the card's).
        overlap: Tile overlap in pixels (default the card's).
        batch_size: Tiles per forward call.
        precision: ``fp32`` (default) or ``bf16``.
        max_pixels: Size limit per input (H x W).
        offset: ``"auto"``, 0 or 1000, for every input.
        bands: ``--bands`` names, for every input.
        runtime: None (the card's), ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` (measured once, see
            :func:`resolve_runtime`).
        sld: Also write SLD styles.

    Returns:
        The number of inputs that failed (0 = all written).

    Raises:
        FileNotFoundError: An input path does not exist or a folder holds no GeoTIFF.
        BundleError: The bundle cannot be loaded.
    """
    files = expand_inputs(inputs)
    out_dir, conf_dir, prob_dir = _output_folders(files, output, confidence, probabilities)
    if runtime == "auto":
        runtime, precision = resolve_runtime(checkpoint, precision, measure=len(files) >= 8)
    bundle = load_bundle(checkpoint)
    failed: list[tuple[Path, str]] = []
    items: list[Path] = []
    with tqdm(total=len(files), unit="file", desc="predict") as bar:
        for f in files:
            bar.set_postfix_str(f.name)
            try:
                dst = out_dir / f"{f.stem}_classes.tif"
                conf = conf_dir / f"{f.stem}_confidence.tif" if conf_dir is not None else None
                prob = prob_dir / f"{f.stem}_probabilities.tif" if prob_dir is not None else None
                predict(bundle, str(f), str(dst), confidence=str(conf) if conf else None,
                        probabilities=str(prob) if prob else None, tile=tile, overlap=overlap,
                        batch_size=batch_size, precision=precision, max_pixels=max_pixels, offset=offset, bands=bands,
                        progress=lambda d, t: None, quiet=True, runtime=runtime, sld=sld)
                items.append(dst.with_suffix(".json"))
                decision = read_decision_tags(dst)
                tqdm.write(f"{f.name}: {decision}")
            except (ValueError, OSError) as exc:
                failed.append((f, " ".join(str(exc).split())))
                tqdm.write(f"error: {f.name}: {failed[-1][1]}", file=sys.stderr)
            bar.update(1)
    if items:
        cat = write_catalog(out_dir, items, catalog_id=f"lulc-{out_dir.resolve().name}",
                            description=f"Class maps of {len(items)} input(s) predicted with the bundle {bundle.card.name}")
        print(f"STAC Catalog {cat}")
    print(f"wrote {len(files) - len(failed)} of {len(files)} class maps to {out_dir}" + (f"; {len(failed)} failed:" if failed else ""))
    for f, msg in failed:
        print(f"  {f}: {msg}", file=sys.stderr)
    return len(failed)


def read_decision_tags(path: str | Path) -> str:
    """The input decision recorded in an output's tags, as one line."""
    import rasterio

    with rasterio.open(path) as ds:
        t = ds.tags()
    return (f"offset {t.get('LULC_INPUT_OFFSET_DN')} DN ({t.get('LULC_INPUT_OFFSET_REASON')}); scale x{t.get('LULC_INPUT_SCALE')}; "
            f"level {t.get('LULC_INPUT_LEVEL')}" + (f"; filled {t['LULC_INPUT_MISSING_BANDS']}" if t.get("LULC_INPUT_MISSING_BANDS") else "")
            + (f"; warning: {t['LULC_INPUT_WARNINGS']}" if t.get("LULC_INPUT_WARNINGS") else ""))


# ---------------------------------------------------------------- --engine dask


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
    from core.inference.block_sources import EarthEngineSource
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


def _block_source(card, src: str | None, aoi: str | None, start: str | None, end: str | None, *, adapter_factory=None,
                  cache_dir: str | None = None, bands: Sequence[str] | None = None, offset: str | int | None = "auto"):
    """Where ``predict --engine dask`` reads its blocks (a file, or Earth Engine for an AOI), with the input decision printed."""
    if aoi is not None:
        source = earth_engine_source(card, aoi, start, end, adapter_factory=adapter_factory, cache_dir=cache_dir)
        print(f"Earth Engine {source.spec.title} {start}..{end}, {source.grid.width} x {source.grid.height} px on "
              f"{source.grid.crs} (10 m): {source.decision.summary()}")
        return source
    from core.inference.block_sources import RasterSource

    name = Path(src).name
    src = str(resolve_input(src).path)  # SAFE / Landsat / STAC Item -> cached VRT
    decision = model_decision(card, input_for_file(src, card, bands=bands, offset=offset))
    source = RasterSource(str(src), tuple(card.bands), decision)
    print(f"{name}: {decision.summary()}")
    return source


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
    runtime: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    block_size: int = 4096,
    blocks_dir: str | None = None,
    retries: int = 2,
    offset: str | int | None = "auto",
    bands: Sequence[str] | None = None,
    sld: bool = False,
) -> Path:
    """Predict a large GeoTIFF/VRT block by block on Dask and write a COG (or a VRT), with its sidecars.

    Beside the map: its raster attribute table, QGIS styles and STAC Item as :func:`predict` writes
    them; a STAC Catalog ``catalog.json`` of the Item in the blocks folder.

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
        runtime: None (the card's, :func:`core.inference.policy.default_runtime`), ``torch``, ``onnxruntime``,
            ``openvino`` or ``auto`` (measured once on this machine).
        workers: Local worker processes (default: CPU cores), at most one per block; with one, the blocks run in this
            process (no cluster); ignored with ``scheduler``.
        scheduler: Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
        block_size: Block side in pixels (rounded to a multiple of ``tile - overlap``).
        blocks_dir: Folder of block files and manifest (default ``<dst>.blocks``).
        retries: Extra attempts per failing block.
        offset: ``"auto"``, 0 or 1000 (see :mod:`core.inputs.decision`).
        bands: Names of the input's bands in file order, overriding its descriptions.
        sld: Also write SLD styles.

    Returns:
        ``dst``.

    Raises:
        OutputError, BandError, InputError, RasterReadError, AOIError: Bad input or output (before any work).
        EarthEngineError: Credentials, quota, permission, dates or an empty collection (with ``aoi``).
        BlockFailedError: Blocks failed on every attempt (finished blocks are kept for a rerun).
        ManifestMismatchError: The blocks folder belongs to a run with other settings.
    """
    from core.inference.blocks import block_grid_summary, local_workers, predict_distributed
    from models.runtimes import ForwardFactory, bundle_checksum, onnx_path_for

    if (src is None) == (aoi is None):
        raise ValueError("give either an input file or an AOI (--aoi with --start and --end)")
    if aoi is not None and not (start and end):
        raise ValueError("--aoi needs --start and --end (YYYY-MM-DD)")
    check_outputs({"--output": dst, "--confidence": confidence}, [src] if src else [])
    ckpt = str(Path(checkpoint).resolve())
    card = read_card(ckpt)
    source = _block_source(card, src, aoi, start, end, adapter_factory=adapter_factory, cache_dir=cache_dir, bands=bands,
                           offset=offset)
    info = source.describe()
    policy = plan_run(card, info["height"], info["width"], decision=source.decision, tile=tile, overlap=overlap,
                      batch_size=batch_size, precision=precision, runtime=runtime)
    for w in policy.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if policy.runtime == "auto":
        runtime, precision = resolve_runtime(ckpt, precision)  # large inputs: measuring pays
        policy = dataclasses.replace(policy, runtime=runtime, precision=precision)
    runtime, precision = policy.runtime, policy.precision
    onnx_path = str(onnx_path_for(ckpt)) if runtime in ("onnxruntime", "openvino") else None
    grid = block_grid_summary(info["height"], info["width"], block_size=block_size, tile=policy.tile, overlap=policy.overlap,
                              full_frame=policy.full_frame)
    # at most one worker per block; the cores are shared among the workers that have one (a worker
    # without a block would take threads from the others and only cost start-up)
    n_workers = local_workers(workers, grid["n_blocks"])
    threads = None if scheduler else max(1, (os.cpu_count() or 1) // n_workers)
    factory = ForwardFactory(ckpt, runtime=runtime, precision=precision, threads=threads, onnx_path=onnx_path)
    if scheduler:
        where = f"on the cluster at {scheduler}"
    elif n_workers == 1:
        where = f"in this process, {threads} thread(s) (one worker's work needs no cluster)"
    else:
        where = f"on a local cluster of {n_workers} worker process(es), {threads} thread(s) each"
    print(f"{grid['n_blocks']} block(s) of {grid['block_size']} px {where}; run: {policy.summary()}; "
          f"halo tiles add {100 * (grid['halo_overhead'] - 1):.0f} %")
    scheme = scheme_of(card)
    prov = run_provenance(ckpt, card.name, policy, input_path=str(getattr(source, 'path', src)) if src else None,
                          input_name=Path(src).name if src else None, earth_engine=_ee_provenance(source) if aoi else None)
    with tqdm(total=grid["n_blocks"], unit="block", desc="predict (dask)") as bar:
        res = predict_distributed(
            source, factory, dst, num_classes=card.num_classes,
            class_ids=[int(c["id"]) for c in card.classes["classes"]], colormap=scheme.colormap(),
            confidence_path=confidence, blocks_dir=blocks_dir, model_id=f"{bundle_checksum(ckpt)}/{runtime}/{precision}",
            policy=policy, block_size=block_size, workers=n_workers,
            scheduler=scheduler, retries=retries, progress=tqdm_progress(bar), log=lambda m: tqdm.write(m, file=sys.stderr),
            tags=prov.to_tags(), class_names=dict(zip(scheme.ids, scheme.names, strict=True)),
        )
    if res.skipped:
        print(f"resumed: {len(res.skipped)} block(s) were already done, {len(res.computed)} predicted now")
    item = finish_outputs(res.output, scheme, prov, confidence=res.confidence, sld=sld)
    cat = write_catalog(res.blocks_dir, [item], catalog_id=f"lulc-{Path(res.output).stem}",
                        description=f"Class map {Path(res.output).name} predicted on Dask with the bundle {card.name}")
    print(f"wrote {res.output}" + (f" and {res.confidence}" if res.confidence else "") + f" (blocks and manifest in {res.blocks_dir}); "
          f"STAC Item {item}, Catalog {cat}")
    return res.output


def _ee_provenance(source) -> dict[str, object]:
    """What an Earth Engine block source fetched: collection, dates, cloud mask and thresholds (for the provenance)."""
    spec = source.spec
    out: dict[str, object] = {"collection": spec.collection, "start": spec.start, "end": spec.end,
                              "cloud_mask": spec.cloud_mask, "cloud_threshold": spec.cloud_threshold}
    for name, op, value in getattr(spec, "filters", ()):
        if name == "CLOUDY_PIXEL_PERCENTAGE" and op == "lte":
            out["max_scene_cloud_percent"] = value
    return out
