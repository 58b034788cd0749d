"""Cached resources and the few calls the pages make into core and models.

Pages call these functions and render what they return; the numerical work happens in ``core``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st
from rasterio.windows import Window
from shapely import geometry as sg

from app.state import Analysis, AppState, query_params_of
from core.aoi import DEFAULT_MAX_AOI_KM2, geodesic_area_km2, locate_aoi, parse_bbox, parse_geojson
from core.config import DW_BUNDLE_DIR, REPO_ROOT, data_dir, runs_dir
from core.errors import AOIError, LulcError, NoDataError
from core.inference.policy import RunPolicy, plan_run
from core.inference.streaming import ClassMap, predict_raster
from core.inputs.bands import canonical_band
from core.inputs.decision import InputDecision, decide_for_raster, parse_bands, prepare_raster
from core.inputs.evidence import read_file_metadata
from core.io.guards import check_gsd
from core.io.raster import GeoRaster, footprint_lonlat, grid_area_km2
from core.sources.samples import (
    SampleScene,
    get_scene,
    list_scenes,
    load_image,
    load_labels,
    scene_decision,
    scene_grid,
)
from models.card import find_bundles
from models.card import read_card as _read_card

if TYPE_CHECKING:  # the model stack (torch, smp) is imported on first use, not for the first page
    from core.evaluation.comparison import CompareResult
    from models.bundle import Bundle

LABEL_TITLES = {"dw": "Dynamic World", "osm": "OpenStreetMap land use", "dfc": "DFC2020 reference",
                "water": "Sen1Floods11 hand-labelled water", "worldcover": "ESA WorldCover",
                "lulc": "Slovenian land-use reference", "dw_model": "Dynamic World model (run locally)"}
MODEL_REFERENCES = ("dw", "dw_model")
"""Reference products that are a model's output (Dynamic World), not ground truth."""
DW_BUNDLE = DW_BUNDLE_DIR
"""The ported Dynamic World bundle, run locally as a reference for every source."""
MAX_AOI_KM2 = DEFAULT_MAX_AOI_KM2


MAX_BUNDLES = 8
"""Bundles kept loaded by the server (all sessions together; the least recently used beyond it is loaded again when asked)."""


@st.cache_resource(show_spinner="Loading model…", max_entries=MAX_BUNDLES)
def get_bundle(path: str, precision: str = "fp32") -> Bundle:
    """The model bundle at ``path``, loaded once per process and precision, shared by every session.

    At most :data:`MAX_BUNDLES` are kept loaded at a time.

    fp32 (the reference, as ``python -m trainer predict`` runs it) unless the user asked for bf16
    (:data:`core.inference.policy.PRECISIONS`).
    """
    from core.classes import scheme_of
    from models.bundle import load_bundle

    bundle = load_bundle(path, precision=precision)
    scheme_of(bundle.card)  # registers a card's own class scheme for every page (the card is read once)
    return bundle


Decide = Callable[[object], InputDecision]
"""``decide(card) -> InputDecision``: how a source's pixels become a model's input (its rule for
bands, offset and level; e.g. :func:`core.sources.samples.scene_decision` for the sample pack)."""


def classify(image: GeoRaster, bundle: Bundle, decide: Decide, *, mask: np.ndarray | None = None,
             progress: Callable[[int, int], None] | None = None, what: str | None = None) -> ClassMap:
    """One model on one source image, by the run policy (:func:`core.inference.policy.plan_run`).

    Every model run of the app goes through here (Explore's prediction and its Dynamic World
    reference, the Accuracy & area and Change pages), so the app's map equals
    ``python -m trainer predict``'s for the same bundle and pixels.

    Args:
        image: What the source delivered (C, H, W), any bands.
        bundle: The model (its precision is the user's choice, fp32 by default).
        decide: The source's input rule (see :data:`Decide`).
        mask: Bool (H, W) AOI mask; pixels outside get no class.
        progress: Called with (passes done, passes total).
        what: How to name the input in messages (default: its ``meta`` name or scene).

    Returns:
        The class map; ``classes.meta`` carries ``"input_decision"`` and ``"run_policy"``.

    Raises:
        BandError, InputError: The image cannot be the model's input.
        NoDataError: No pixel with data in all the model's bands inside the AOI.
    """
    policy = plan_run(bundle.card, image.height, image.width, decision=decide(bundle.card), precision=bundle.precision)
    model_input = prepare_raster(image, policy.decision)
    valid = model_input.valid_mask()
    if not (valid if mask is None else valid & mask).any():
        raise NoDataError(
            f"{what or image.meta.get('name') or image.meta.get('scene') or 'the input'} has no pixel with data in the AOI (every pixel is "
            "nodata in at least one of the model's bands); move the AOI onto the imagery or check the file's nodata value"
        )
    model_input = replace(model_input, meta={**model_input.meta, "run_policy": policy})
    return predict_raster(model_input, bundle, policy, bands=bundle.bands, num_classes=bundle.num_classes,
                          class_ids=bundle.class_ids, mask=mask, progress=progress)


WARM_UP_DELAY_S = 3.0
"""Seconds between the first page run and the background import of the model stack."""


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Import the model stack (torch, segmentation_models_pytorch, torchmetrics) in the background, once.

    Called after the first page is drawn, so the map shows without waiting for these imports
    (about 10 s on a 2-core machine) and *Run model* usually finds them done. The imports start
    :data:`WARM_UP_DELAY_S` later: they hold the GIL, and the browser is still fetching the map's
    component and image from this server right after the first run (measured with
    ``benchmarks/bench_app_start.py``: 5.7 s to a usable map when importing at once).
    """

    def run() -> None:
        time.sleep(WARM_UP_DELAY_S)
        import core.evaluation.comparison  # noqa: F401
        import models.bundle  # noqa: F401

    t = threading.Thread(target=run, name="lulc-warm-up", daemon=True)
    t.start()
    return t


@st.cache_data(show_spinner=False)
def scenes(root: str) -> list[SampleScene]:
    """Sample scenes of the data directory ``root`` (cached)."""
    return list_scenes(root)


def sample_scenes() -> list[SampleScene]:
    """Scenes of the configured data directory."""
    return scenes(str(data_dir()))


def read_card(path: str | Path):
    """A bundle's card, with its class scheme registered (:func:`core.classes.scheme_of`).

    A bundle trained on a user's own class file carries its scheme in the card; registering it here
    lets every page find the user's names and colours with ``get_scheme(card.scheme_name)``.

    Raises:
        BundleError: The card is missing or invalid. SchemeError: Its classes are malformed.
    """
    from core.classes import scheme_of

    card = _read_card(path)
    scheme_of(card)
    return card


def _scan_bundles() -> tuple[list[str], list[tuple[str, str]]]:
    ok, skipped = [], []
    for p in find_bundles(REPO_ROOT / "models", runs_dir()):
        try:
            read_card(p)
        except (ValueError, OSError) as exc:  # BundleError and unreadable files: listed, not fatal
            skipped.append((_rel(p), str(exc)))
        else:
            ok.append(str(p))
    return ok, skipped


def bundle_paths() -> list[str]:
    """Usable bundles shipped in ``models/`` and trained into ``runs/``; unreadable ones are left out.

    See :func:`skipped_bundles` for those left out and why.
    """
    return _scan_bundles()[0]


def skipped_bundles() -> list[tuple[str, str]]:
    """(path relative to the repository, reason) of bundles whose card cannot be read or is invalid."""
    return _scan_bundles()[1]


def _rel(p: Path) -> str:
    try:
        return str(Path(p).relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def reference_is_model(product: str) -> bool:
    """True when a reference product is a model's output (Dynamic World), not ground truth."""
    return product in MODEL_REFERENCES


def bundle_label(path: str) -> str:
    """Short display name of a bundle."""
    p = Path(path)
    rel = _rel(p)
    try:
        card = read_card(p)
        if card.arch == "dynamicworld":
            return f"Dynamic World (Brown et al. 2022), run locally – {rel}"
        return f"{card.name} ({card.arch}/{card.encoder}, {len(card.bands)} bands) – {rel}"
    except (ValueError, OSError):
        return f"{rel} (unreadable card)"


def aoi_origin(state: AppState) -> str:
    """What the user did to give the AOI, for messages: "the bounding box you typed", "the area you drew", ..."""
    if state.aoi_mode == "Bounding box":
        return "the bounding box you typed"
    if state.aoi_mode == "GeoJSON":
        return "the GeoJSON you pasted or uploaded"
    if state.aoi_mode == "Draw on map":
        return "the area you drew"
    return "the whole scene"


_ACTION = {"Bounding box": "type", "GeoJSON": "paste", "Draw on map": "draw"}


def _user_aoi(state: AppState):
    """The user's AOI polygon (lon/lat), refused above the AOI limit by its own area (never clipped to fit).

    Raises:
        AOIError: Not parseable, invalid, or larger than :data:`MAX_AOI_KM2`; the message says what the user gave.
    """
    what = aoi_origin(state)
    try:
        geom = _aoi_geometry(state)
    except AOIError as exc:
        raise (exc if str(exc).startswith("no AOI") else AOIError(f"{what}: {exc}")) from None
    km2 = geodesic_area_km2(geom)
    if km2 > MAX_AOI_KM2:
        raise AOIError(f"{what} covers {km2:,.0f} km²; the limit is {MAX_AOI_KM2:.0f} km²: "
                       f"{_ACTION.get(state.aoi_mode, 'give')} a smaller area (nothing was run)")
    return geom


def _place_message(state: AppState, exc: AOIError) -> str:
    msg = str(exc).replace("draw it over", f"{_ACTION.get(state.aoi_mode, 'place')} it over").replace("draw a", f"{_ACTION.get(state.aoi_mode, 'give')} a")
    return msg if msg.startswith(aoi_origin(state)) else f"{aoi_origin(state)}: {msg}"


@dataclass(frozen=True)
class AoiPreview:
    """The user's AOI as soon as it parses: its polygon, area, and whether it fits the data and the limit."""

    geojson: dict | None
    km2: float | None
    note: str
    ok: bool


def preview_aoi(state: AppState, crs=None, transform=None, height: int = 0, width: int = 0) -> AoiPreview | None:
    """Parse the AOI the user gave and place it on the grid (when given), for the map before *Run model*.

    Returns ``None`` for "Whole scene" and for a mode with nothing entered yet.
    """
    if state.aoi_mode == "Whole scene" or (state.aoi_mode == "Bounding box" and not state.bbox_text.strip()) or (
            state.aoi_mode != "Bounding box" and not state.aoi_geojson):
        return None
    what = aoi_origin(state)
    try:
        geom = _aoi_geometry(state)
    except AOIError as exc:
        return AoiPreview(None, None, f"{what}: {exc}", False)
    geo = sg.mapping(geom)
    km2 = geodesic_area_km2(geom)
    if km2 > MAX_AOI_KM2:
        return AoiPreview(geo, km2, f"{what} covers {km2:,.0f} km²; the limit is {MAX_AOI_KM2:.0f} km²: "
                                    f"{_ACTION.get(state.aoi_mode, 'give')} a smaller area", False)
    if transform is None:
        return AoiPreview(geo, km2, f"AOI ({what}): {km2:,.2f} km², within the {MAX_AOI_KM2:.0f} km² limit", True)
    try:
        placed = locate_aoi(geom, crs, transform, height, width, max_area_km2=MAX_AOI_KM2)
    except AOIError as exc:
        return AoiPreview(geo, km2, _place_message(state, exc), False)
    inside = placed.area_km2
    fit = "inside the data" if inside >= 0.995 * km2 else f"{inside:,.2f} km² of it inside the data (only that part is run)"
    return AoiPreview(geo, km2, f"AOI ({what}): {km2:,.2f} km², {fit}, within the {MAX_AOI_KM2:.0f} km² limit", True)


def place_aoi(state: AppState, crs, transform, height: int, width: int) -> tuple[Window, np.ndarray, float, dict | None]:
    """The user's AOI on a grid: pixel window, mask (h, w), area in km^2 and lon/lat GeoJSON.

    "Whole scene" takes the whole grid (refused above the AOI limit); otherwise the drawn, pasted
    or typed AOI is refused above the limit by its own area (never clipped silently to fit) and
    placed with :func:`core.aoi.locate_aoi`.

    Raises:
        AOIError: No AOI, invalid geometry, outside the grid or too large; the message says what the user gave.
    """
    if state.aoi_mode == "Whole scene":
        km2 = grid_area_km2(crs, transform, height, width)
        if km2 > MAX_AOI_KM2:
            raise AOIError(f"the data covers {km2:,.0f} km², above the {MAX_AOI_KM2:.0f} km² limit; give an AOI inside it")
        footprint = footprint_lonlat(crs, transform, height, width)
        if footprint and footprint[0] > footprint[2]:  # crosses the antimeridian: count east past 180
            footprint = (footprint[0], footprint[1], footprint[2] + 360.0, footprint[3])
        geo = sg.mapping(sg.box(*footprint)) if footprint else None
        return Window(0, 0, width, height), np.ones((height, width), bool), km2, geo
    geom = _user_aoi(state)
    try:
        aoi = locate_aoi(geom, crs, transform, height, width, max_area_km2=MAX_AOI_KM2)
    except AOIError as exc:
        raise AOIError(_place_message(state, exc)) from None
    return aoi.window, aoi.mask, aoi.area_km2, sg.mapping(aoi.geometry)


def _predict_and_store(state: AppState, name: str, source: str, image: GeoRaster, window: Window, mask: np.ndarray,
                       km2: float, geo: dict | None, references: dict, t0: float,
                       progress: Callable[[int, int], None] | None, decide: Decide) -> Analysis:
    """Run the chosen bundle on the AOI image and keep the result as the session's analysis.

    ``image`` is what the source delivered (kept for display, bands renamed to canonical names);
    the model sees it through ``decide`` (:mod:`core.inputs.decision`) and the run policy
    (:func:`classify`); the prediction's ``meta`` carries the decision as ``"input_decision"``
    (see :func:`input_decision`).
    """
    bundle = get_bundle(state.bundle_path, state.precision)
    pred = classify(image, bundle, decide, mask=mask, progress=progress, what=name)
    references = {**references, **_dw_reference(state, image, mask, decide)}
    decision = pred.classes.meta["input_decision"]
    names = tuple(canonical_band(n) or n for n in decision.file_bands)
    if len(set(names)) == len(names) and len(names) == image.count:
        image = replace(image, band_names=names)
    link = {k: v for k, v in query_params_of(state).items() if k != "reference"} if source == "samples" else {}
    state.analysis = Analysis(name, state.bundle_path, window, image, pred, mask, km2, geo, time.perf_counter() - t0,
                              references, source=source, link=link)
    return state.analysis


def _dw_reference(state: AppState, image: GeoRaster, mask: np.ndarray, decide: Decide) -> dict:
    """The Dynamic World model run locally on the AOI, as a reference for any source.

    It runs as ``python -m trainer predict --checkpoint models/dynamicworld`` does on the same
    pixels (its own input decision and the run policy: one full-frame pass where it fits, fp32).

    Returns:
        ``{"dw_model": (uint8 GeoRaster (1, h, w) of class ids, "dynamic_world")}``; empty when the
        chosen model is Dynamic World itself, the port is not installed, or the input cannot be
        its input (it lacks one of its bands).
    """
    if not (DW_BUNDLE / "card.json").exists() or Path(state.bundle_path).resolve() == DW_BUNDLE.resolve():
        return {}
    dw = get_bundle(str(DW_BUNDLE))
    try:
        pred = classify(image, dw, decide, mask=mask)
    except LulcError:  # the input is not Dynamic World's input (missing bands, no data): no reference
        return {}
    return {"dw_model": (pred.classes, dw.card.scheme_name)}


def _aoi_geometry(state: AppState):
    """The AOI polygon (lon/lat) from the bounding box, GeoJSON or drawing the user gave."""
    if state.aoi_mode == "Bounding box":
        return parse_bbox(state.bbox_text)
    if not state.aoi_geojson:
        raise AOIError("no AOI yet: draw a rectangle or polygon on the map, or paste or upload GeoJSON")
    return parse_geojson(state.aoi_geojson)


def selection_of(state: AppState, source: str, item: str | None) -> tuple:
    """What a result must have been made from to be shown as current: source, scene or file, AOI, model, precision."""
    aoi = {"Bounding box": state.bbox_text.replace(" ", ""), "Whole scene": ""}.get(state.aoi_mode, str(state.aoi_geojson or ""))
    return (source, item or "", state.aoi_mode, aoi, str(state.bundle_path), state.precision)


def run_analysis(state: AppState, progress: Callable[[int, int], None] | None = None) -> Analysis:
    """Predict the current AOI of the chosen sample scene and store the result in ``state``.

    Raises:
        AOIError, BandError, BundleError, SceneNotFoundError: With messages for the user.
    """
    if not state.scene_id:
        raise AOIError("pick a scene first")
    scene = get_scene(state.scene_id, data_dir())
    scene_decision(scene, get_bundle(state.bundle_path, state.precision).card)  # refuse an unusable input before reading pixels
    window, mask, km2, geo = place_aoi(state, *scene_grid(scene), scene.height, scene.width)
    t0 = time.perf_counter()
    image = load_image(scene, list(scene.bands), window)
    refs = {}
    for product in scene.labels:
        lab, scheme = load_labels(scene, product, window)
        refs[product] = (lab, scheme.name)
    return _predict_and_store(state, scene.id, "samples", image, window, mask, km2, geo, refs, t0, progress,
                              lambda card: scene_decision(scene, card))


def reference_options(analysis: Analysis) -> list[str]:
    """Reference label products available for an analysis."""
    return list(analysis.references)


def reference_scheme(analysis: Analysis, product: str) -> str:
    """Scheme name of one of the analysis' reference products."""
    return analysis.references[product][1]


def compare_with(analysis: Analysis, product: str) -> CompareResult:
    """Compare the analysis' prediction with one of its reference label products.

    Computed once per product and kept on the analysis: pages rerun on every widget change.
    """
    if product not in analysis.comparisons:
        from core.evaluation.comparison import compare

        ref, scheme = analysis.references[product]
        model_scheme = read_card(analysis.bundle_path).scheme_name
        analysis.comparisons[product] = compare(analysis.prediction, model_scheme, ref, scheme, analysis.aoi_mask)
    return analysis.comparisons[product]


@st.cache_data(show_spinner=False, max_entries=16)
def scene_preview(scene_id: str, root: str) -> tuple[np.ndarray, object, object]:
    """True-colour RGBA preview of a scene (decimated) with its CRS and transform."""
    from core.products.render import composite
    from core.sources.samples import load_preview

    p = load_preview(get_scene(scene_id, root))
    return composite(p, ("B4", "B3", "B2")), p.crs, p.transform


def prediction_rgba(analysis: Analysis) -> np.ndarray:
    """The analysis' class map painted with its model's class colours (RGBA)."""
    from core.classes import get_scheme
    from core.products.render import class_rgba

    return class_rgba(analysis.prediction.classes.data[0], get_scheme(read_card(analysis.bundle_path).scheme_name))


CACHE_DIR = Path(os.environ.get("LULC_CACHE_DIR", Path.home() / ".cache" / "lulc-explorer")) / "earth-engine"


def _earth_engine_config():
    """Earth Engine settings from ``.streamlit/secrets.toml`` ([earthengine]) or the environment."""
    from core.sources.earth_engine import EarthEngineConfig

    try:
        secrets = dict(st.secrets)
    except Exception:  # no secrets.toml: the environment is read instead
        secrets = {}
    return EarthEngineConfig.from_env(secrets)


def earth_engine_problems() -> list[str]:
    """What is missing before Earth Engine can be used (empty when configured)."""
    return _earth_engine_config().problems()


@st.cache_resource(show_spinner=False)
def earth_engine_adapter():
    """The live Earth Engine adapter (initialised on its first request)."""
    from core.sources.earth_engine import LiveEarthEngine

    return LiveEarthEngine(_earth_engine_config())


def run_earth_engine(state: AppState, progress: Callable[[int, int], None] | None = None) -> Analysis:
    """Fetch imagery and reference labels for the AOI from Earth Engine, predict, store in ``state``.

    Sentinel-2 bands (and Sentinel-1 VV/VH when the model uses them) come as a median composite of
    clear pixels between ``state.ee_start`` and ``state.ee_end`` on a 10 m grid in the AOI's UTM
    zone; Dynamic World (mode) and ESA WorldCover come on the same grid.

    Raises:
        AOIError: No AOI, invalid, or too large.
        EarthEngineError: Credentials, quota, permission or request problems, in words to act on.
    """
    from rasterio.crs import CRS

    from core.sources.earth_engine import (
        download,
        dynamic_world_spec,
        fetch_imagery,
        input_decision,
        model_level,
        utm_grid,
        worldcover_spec,
    )

    bundle = get_bundle(state.bundle_path, state.precision)
    if state.aoi_mode == "Whole scene":
        raise AOIError("Earth Engine needs an AOI: draw one, paste GeoJSON or type a bounding box")
    grid = utm_grid(_user_aoi(state).bounds)
    window, mask, km2, geo = place_aoi(state, CRS.from_user_input(grid.crs), grid.affine, grid.height, grid.width)
    adapter = earth_engine_adapter()
    t0 = time.perf_counter()
    level = model_level(bundle.card)
    image = fetch_imagery(adapter, grid, state.ee_start, state.ee_end, bundle.bands, level=level, cloud_threshold=state.ee_cloud,
                          cache_dir=CACHE_DIR, progress=progress)
    dw = download(adapter, dynamic_world_spec(state.ee_start, state.ee_end), grid, cache_dir=CACHE_DIR)
    wc = download(adapter, worldcover_spec(), grid, cache_dir=CACHE_DIR)
    refs = {"dw": (dw.window(window), "dynamic_world"), "worldcover": (wc.window(window), "esa_worldcover")}
    input_decision(image, bundle.card, level)  # refuse an unusable composite with the message of the rule
    return _predict_and_store(state, "earth-engine", "earth_engine", image.window(window), window, mask, km2, geo, refs, t0, progress,
                              lambda card: input_decision(image, card, level))


MAX_UPLOAD_MB = 100
MAX_UPLOAD_PIXELS = 25_000_000
MAX_UPLOAD_DECODED_MB = 1024
"""Largest upload once decompressed (MB): 25 Mpx of 13 uint16 bands is 620 MB; a tiny deflate file of a constant
raster can declare many GB."""


def load_upload(name: str, data: bytes) -> GeoRaster:
    """Read an uploaded GeoTIFF whose band descriptions name its bands, or a SAFE ``.zip`` or a STAC Item ``.json``.

    A Sentinel-2 SAFE product (zipped) or a STAC Item with absolute asset URLs is read through
    :func:`core.sources.downloads.resolve_input`, within the same size limits.

    The file is saved under a generated id (``upload-<hex>.tif``) in a temporary folder of its own, removed when
    it has been read; the user's file name is used in messages only and must be a plain name. From the header,
    before any pixel is read: the pixel count (a sparse file can declare 200000 x 200000 pixels in a few KB), the
    decompressed size (a deflate file of a constant raster is tiny on disk) and, for a GeoTIFF, that every strip or
    tile lies inside the file (a cut-off upload). Messages name the user's file, never the server's copy.

    Args:
        name: The file's name as the browser sent it.
        data: Its bytes (at most :data:`MAX_UPLOAD_MB` MB).

    Returns:
        The raster (C, H, W) with its CRS, transform, nodata and band names; ``meta`` has ``name`` and ``tags``.

    Raises:
        UploadNameError: The name holds a folder path, ``..`` or control characters.
        RasterReadError: Too many bytes, corrupt, or not georeferenced.
        SizeLimitError: More than :data:`MAX_UPLOAD_PIXELS` pixels, or more than :data:`MAX_UPLOAD_DECODED_MB` MB
            decompressed.
        IncompleteFileError: The header is whole but the pixel data is cut off.
    """
    import tempfile
    import uuid

    from core.errors import LulcError, RasterReadError
    from core.io.guards import check_blocks_in_file, check_decoded_size, check_size, upload_name
    from core.io.raster import raster_info, read_raster

    name = upload_name(name)
    if len(data) > MAX_UPLOAD_MB * 2**20:
        raise RasterReadError(f"{name} is {len(data) / 2**20:.0f} MB; uploads are limited to {MAX_UPLOAD_MB} MB: crop it first")
    from core.sources.downloads import resolve_input

    kind = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="lulc-upload-") as tmp:
        # a generated id in the upload's own temporary folder, never the user's file name or path
        path = Path(tmp) / f"upload-{uuid.uuid4().hex}{kind if kind in ('.zip', '.json') else '.tif'}"
        path.write_bytes(data)
        try:
            if kind in (".zip", ".json"):  # a Sentinel-2 SAFE zip or a STAC Item (absolute asset URLs) -> a VRT here
                path = Path(resolve_input(path, cache=tmp).path)
            info = raster_info(path)
            check_size(info, max_pixels=MAX_UPLOAD_PIXELS, name=name)
            check_decoded_size(info, max_bytes=MAX_UPLOAD_DECODED_MB * 2**20, name=name, file_bytes=len(data))
            check_blocks_in_file(path, name=name)
            raster = read_raster(path, require_crs=True)
            tags = read_file_metadata(path)
        except LulcError as exc:  # say the user's file name, not the server's temporary path
            raise type(exc)(str(exc).replace(str(path), name).replace(path.name, name)) from None
    return GeoRaster(raster.data, raster.crs, raster.transform, raster.nodata, raster.band_names, meta={"name": name, "tags": tags})


BAND_ORDER_PRESETS: dict[str, tuple[str, ...] | None] = {
    "Band descriptions of the file": None,
    "13-band L1C (B1 … B12 with B10)": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"),
    "12-band L2A (B1 … B12 without B10)": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"),
    "EuroSAT (13 bands, B8A last)": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "B8A"),
}
"""Band orders offered for uploads without (or with wrong) band descriptions. EuroSAT's
multispectral GeoTIFFs store B8A last (Helber et al. 2019, dataset files)."""


def upload_decision(state: AppState, raster: GeoRaster, *, offset: str = "auto", bands: str | tuple[str, ...] | None = None) -> InputDecision:
    """How an uploaded raster is read for the chosen model (:func:`core.inputs.decision.decide_for_raster`).

    Args:
        state: The session (for the chosen bundle).
        raster: From :func:`load_upload`.
        offset: ``"auto"``, ``"0"`` or ``"1000"``.
        bands: A preset's band names, or comma-separated names (custom order); ``None``: the file's
            band descriptions.

    Raises:
        BandError, InputError: With messages for the user (missing bands, ambiguous offset, ...).
    """
    return _upload_rule(raster, offset=offset, bands=bands)(get_bundle(state.bundle_path, state.precision).card)


def _upload_rule(raster: GeoRaster, *, offset: str = "auto", bands: str | tuple[str, ...] | None = None) -> Decide:
    """The input rule of an uploaded raster (:func:`core.inputs.decision.decide_for_raster`), for any model's card."""
    names = parse_bands(bands) if bands else None
    return lambda card: decide_for_raster(raster, card, bands=names, offset=offset, metadata=raster.meta.get("tags") or {},
                                          what=str(raster.meta.get("name", "the upload")))


def input_decision(analysis: Analysis) -> InputDecision | None:
    """The input decision of an analysis' run (shown beside the run)."""
    return analysis.prediction.classes.meta.get("input_decision")


def run_policy(analysis: Analysis) -> RunPolicy | None:
    """How the model ran for an analysis (:class:`core.inference.policy.RunPolicy`; shown beside the run)."""
    return analysis.prediction.classes.meta.get("run_policy")


def run_upload(state: AppState, raster: GeoRaster, progress: Callable[[int, int], None] | None = None, *,
               offset: str = "auto", bands: str | tuple[str, ...] | None = None) -> Analysis:
    """Predict an uploaded raster (whole, or the AOI inside it); uploads carry no reference labels.

    Args:
        state: The session.
        raster: From :func:`load_upload`.
        progress: Called with (tiles done, tiles total).
        offset: ``"auto"``, ``"0"`` or ``"1000"`` (see :func:`upload_decision`).
        bands: Band order for files without (or with wrong) descriptions.

    Raises:
        BandError: The raster lacks required model bands (the message names them and the spellings tried).
        InputError: Ambiguous offset (choose it), not Sentinel-2 reflectance, or a level the card refuses.
        GsdError: Its pixel size differs from the model's by more than the tolerance.
        AOIError: The AOI is invalid, outside the raster or too large.
        NoDataError: No pixel with data inside the AOI.
    """
    bundle = get_bundle(state.bundle_path, state.precision)
    upload_decision(state, raster, offset=offset, bands=bands)  # refuse an unusable upload before any other work
    check_gsd(raster.crs, raster.transform, raster.height, raster.width, bundle.card.gsd_m, name=str(raster.meta.get("name", "upload")))
    window, mask, km2, geo = place_aoi(state, raster.crs, raster.transform, raster.height, raster.width)
    return _predict_and_store(state, str(raster.meta.get("name", "upload")), "upload", raster.window(window), window, mask, km2, geo,
                              {}, time.perf_counter(), progress, _upload_rule(raster, offset=offset, bands=bands))


def report_unexpected(exc: BaseException, where: str, *, lead: str = "Something unexpected went wrong") -> str:
    """Write the traceback of an unexpected error (a bug) to a crash log; returns one short message for ``st.error``.

    Args:
        exc: The exception.
        where: What was running, written into the log.
        lead: The message's first words.

    Returns:
        ``"<lead> (<ExceptionType>: <first 160 characters>); the details are in `<log>`. ..."`` (no traceback).
    """
    from core.io.outputs import write_crash_log

    log = write_crash_log(exc, f"app: {where}")
    detail = f"the details are in `{log}`" if log else "no log file could be written"
    return (f"{lead} ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); {detail}. "
            "Nothing was changed; try again or pick another input, and please report it with that file.")


def upload_preview(raster: GeoRaster, max_side: int = 1024) -> np.ndarray:
    """True-colour RGBA of an uploaded raster (decimated to ``max_side``), for the map before *Run model*.

    Raises:
        BandError: The file names no B2, B3 and B4 (its bands are not Sentinel-2 spellings).
    """
    from core.errors import BandError
    from core.products.render import composite

    names = tuple(canonical_band(str(n)) or str(n) for n in raster.band_names)
    if len(set(names)) != len(names) or not {"B2", "B3", "B4"} <= set(names):
        raise BandError("no B2, B3 and B4 among the file's band names")
    step = max(1, -(-max(raster.height, raster.width) // max_side))
    small = GeoRaster(raster.data[:, ::step, ::step], raster.crs, raster.transform @ raster.transform.scale(step, step),
                      raster.nodata, names)
    return composite(small, ("B4", "B3", "B2"))


def footprint_geojson(raster: GeoRaster) -> dict | None:
    """The lon/lat footprint of a raster as a GeoJSON polygon (``None`` without a CRS)."""
    fp = footprint_lonlat(raster.crs, raster.transform, raster.height, raster.width)
    return sg.mapping(sg.box(*fp)) if fp and fp[0] < fp[2] else None


def upload_area_note(raster: GeoRaster) -> str:
    """The area an uploaded raster covers, and whether it fits the AOI limit as a whole."""
    km2 = grid_area_km2(raster.crs, raster.transform, raster.height, raster.width)
    fits = "fits the limit as a whole" if km2 <= MAX_AOI_KM2 else f"above the {MAX_AOI_KM2:.0f} km² limit: give an AOI inside it"
    return f"{km2:,.2f} km² ({fits})"
