"""Cached resources and the few calls the pages make into core and models.

Pages call these functions and render what they return; the numerical work happens in ``core``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st
from rasterio.windows import Window
from shapely import geometry as sg

from app.state import Analysis, AppState
from core.analysis import CompareResult, compare, predict_aoi
from core.aoi import DEFAULT_MAX_AOI_KM2, bbox_geometry, locate_aoi, parse_geojson
from core.config import REPO_ROOT, data_dir
from core.errors import AOIError
from core.sources.samples import (
    LABEL_PRODUCTS,
    SampleScene,
    get_scene,
    list_scenes,
    load_image,
    load_labels,
    scene_grid,
)
from models.bundle import Bundle, load_bundle, read_card
from models.registry import find_bundles

LABEL_TITLES = {"dw": "Dynamic World", "osm": "OpenStreetMap land use", "dfc": "DFC2020 reference", "water": "Sen1Floods11 hand-labelled water"}
MAX_AOI_KM2 = DEFAULT_MAX_AOI_KM2


@st.cache_resource(show_spinner="Loading model…")
def get_bundle(path: str) -> Bundle:
    """The model bundle at ``path``, loaded once per process (bf16 where the CPU supports it)."""
    return load_bundle(path, precision="auto")


@st.cache_data(show_spinner=False)
def scenes(root: str) -> list[SampleScene]:
    """Sample scenes of the data directory ``root`` (cached)."""
    return list_scenes(root)


def sample_scenes() -> list[SampleScene]:
    """Scenes of the configured data directory."""
    return scenes(str(data_dir()))


def bundle_paths() -> list[str]:
    """Bundles shipped in ``models/`` and trained into ``runs/`` (newest runs included)."""
    return [str(p) for p in find_bundles(REPO_ROOT / "models", REPO_ROOT / "runs")]


def bundle_label(path: str) -> str:
    """Short display name of a bundle."""
    p = Path(path)
    try:
        rel = p.relative_to(REPO_ROOT)
    except ValueError:
        rel = p
    try:
        card = read_card(p)
        return f"{card.name} ({card.arch}/{card.encoder}, {len(card.bands)} bands) – {rel}"
    except ValueError:
        return str(rel)


def resolve_aoi(state: AppState, scene: SampleScene) -> tuple[Window, np.ndarray, float, dict | None]:
    """The pixel window, AOI mask, area (km^2) and lon/lat GeoJSON of the AOI the user gave.

    Raises:
        AOIError: No AOI, invalid geometry, outside the scene or too large.
    """
    crs, transform, scene_km2 = scene_grid(scene)
    if state.aoi_mode == "Whole scene":
        if scene_km2 > MAX_AOI_KM2:
            raise AOIError(f"the scene covers {scene_km2:.0f} km^2, above the {MAX_AOI_KM2:.0f} km^2 limit; draw a smaller AOI")
        geo = sg.mapping(sg.box(*scene.bounds_lonlat)) if scene.bounds_lonlat else None
        return Window(0, 0, scene.width, scene.height), np.ones((scene.height, scene.width), bool), scene_km2, geo
    if state.aoi_mode == "Bounding box":
        try:
            parts = [float(v) for v in state.bbox_text.replace(";", ",").split(",")]
        except ValueError:
            parts = []
        if len(parts) != 4:
            raise AOIError("type the bounding box as four numbers: west, south, east, north (degrees)")
        geom = bbox_geometry(*parts)
    else:
        if not state.aoi_geojson:
            raise AOIError("no AOI yet: draw a rectangle or polygon on the map, or paste or upload GeoJSON")
        geom = parse_geojson(state.aoi_geojson)
    aoi = locate_aoi(geom, crs, transform, scene.height, scene.width, max_area_km2=MAX_AOI_KM2)
    return aoi.window, aoi.mask, aoi.area_km2, sg.mapping(aoi.geometry)


def run_analysis(state: AppState, progress: Callable[[int, int], None] | None = None) -> Analysis:
    """Predict the current AOI with the chosen bundle and store the result in ``state``.

    Raises:
        AOIError, BandError, BundleError, SceneNotFoundError: With messages for the user.
    """
    if not state.scene_id:
        raise AOIError("pick a scene first")
    scene = get_scene(state.scene_id, data_dir())
    bundle = get_bundle(state.bundle_path)
    bundle.check_bands(scene.bands)
    window, mask, area, geo = resolve_aoi(state, scene)
    t0 = time.perf_counter()
    image = load_image(scene, list(scene.bands), window)
    pred = predict_aoi(image, bundle, bands=bundle.bands, num_classes=bundle.num_classes, class_ids=bundle.class_ids,
                       aoi_mask=mask, tile=bundle.card.tile, overlap=32, batch_size=4, progress=progress)
    analysis = Analysis(scene.id, state.bundle_path, window, image, pred, mask, area, geo, time.perf_counter() - t0)
    state.analysis = analysis
    if state.reference not in scene.labels:
        state.reference = "dw" if "dw" in scene.labels else scene.labels[0]
    return analysis


def reference_options(scene_id: str) -> list[str]:
    """Label products available for a scene."""
    return [k for k in get_scene(scene_id, data_dir()).labels if k in LABEL_PRODUCTS]


def compare_with(analysis: Analysis, product: str) -> CompareResult:
    """Compare the analysis' prediction with a reference label product on its grid.

    Raises:
        SceneNotFoundError: The scene has no such product.
    """
    ref, scheme = load_labels(get_scene(analysis.scene_id, data_dir()), product, analysis.window)
    bundle = get_bundle(analysis.bundle_path)
    return compare(analysis.prediction, bundle.card.scheme_name, ref, scheme.name, analysis.aoi_mask)


@st.cache_data(show_spinner=False, max_entries=16)
def scene_preview(scene_id: str, root: str) -> tuple[np.ndarray, object, object]:
    """True-colour RGBA preview of a scene (decimated) with its CRS and transform."""
    from core.render import composite
    from core.sources.samples import load_preview

    p = load_preview(get_scene(scene_id, root))
    return composite(p, ("B4", "B3", "B2")), p.crs, p.transform


def prediction_rgba(analysis: Analysis) -> np.ndarray:
    """The analysis' class map painted with its model's class colours (RGBA)."""
    from core.classes import get_scheme
    from core.render import class_rgba

    return class_rgba(analysis.prediction.classes.data[0], get_scheme(get_bundle(analysis.bundle_path).card.scheme_name))


def reference_scheme(scene_id: str, product: str) -> str:
    """Scheme name of a scene's label product."""
    return get_scene(scene_id, data_dir()).label_scheme(product).name


def data_root() -> str:
    """The data directory as a string (a cache key)."""
    return str(data_dir())
