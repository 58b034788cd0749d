"""One typed session-state object for the whole app (no loose ``st.session_state`` keys)."""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from core.config import DEFAULT_BUNDLE_DIR

KEY = "lulc_state"


@dataclass
class Analysis:
    """The result of one run on the Explore page, read by Compare, Metrics and Export.

    Attributes:
        scene_id: Sample scene the AOI lies in, or ``"earth-engine"``.
        bundle_path: Model bundle used.
        window: ``rasterio.windows.Window`` of the AOI in scene pixels.
        image: ``core.io.raster.GeoRaster`` of the AOI window (all scene bands).
        prediction: ``core.inference.streaming.ClassMap`` on the same grid.
        aoi_mask: Bool (H, W), True inside the AOI.
        aoi_km2: AOI area in km^2.
        aoi_geojson: The AOI polygon (lon/lat) or ``None`` for a whole scene without georeference.
        seconds: Wall time of the prediction.
        references: Label product -> (uint8 ``GeoRaster`` on the image's grid, scheme name).
        source: ``"samples"``, ``"earth_engine"`` or ``"upload"``.
        comparisons: Reference product -> ``core.evaluation.comparison.CompareResult``, filled on first use.
        selection: The Explore selection it was made from (``app.services.selection_of``); a result whose
            selection differs from the current one is shown only as "the last run".
        finished: Local time the run ended (``HH:MM:SS``).
        link: Query parameters that reopen this analysis (:func:`query_params_of` of the selection it was
            made from, without ``reference``); empty for an upload or Earth Engine run, which a link cannot redo.
    """

    scene_id: str
    bundle_path: str
    window: Any
    image: Any
    prediction: Any
    aoi_mask: Any
    aoi_km2: float
    aoi_geojson: dict | None
    seconds: float
    references: dict = field(default_factory=dict)
    source: str = "samples"
    comparisons: dict = field(default_factory=dict)
    selection: tuple = ()
    finished: str = ""
    link: dict = field(default_factory=dict)

    def describe(self, model: str | None = None) -> str:
        """One line naming the run: scene or file, AOI area, model (``model``, else the bundle folder's name) and time."""
        when = f" · at {self.finished}" if self.finished else ""
        return f"{self.scene_id} · AOI {self.aoi_km2:,.2f} km² · model {model or Path(self.bundle_path).name}{when}"


@dataclass
class TrainingJob:
    """A ``python -m trainer fit`` process started from the Train page."""

    pid: int
    run_dir: str
    config: str
    log_path: str
    started: float


@dataclass
class AppState:
    """Everything the pages share."""

    scene_id: str | None = None
    aoi_mode: str = "Draw on map"
    draw_pending: bool = False
    aoi_geojson: dict | None = None
    bbox_text: str = ""
    bundle_path: str = str(DEFAULT_BUNDLE_DIR)
    precision: str = "fp32"  # the reference; "bf16" only when the user asks (core.inference.policy.PRECISIONS)
    reference: str = "dw"
    composite: str = "True colour (B4, B3, B2)"
    overlay: str = "Prediction"
    opacity: float = 0.7
    analysis: Analysis | None = None
    selection: tuple = ()  # the Explore page's current selection (app.services.selection_of)
    job: TrainingJob | None = None
    ee_start: str = "2021-06-01"
    ee_end: str = "2021-08-31"  # inclusive last date (summer 2021)
    ee_cloud: float = 0.6
    change: Any = None
    report_html: str | None = None
    url_applied: bool = False
    from_link: bool = False  # the session was opened from a link naming a scene (pages offer Run model for it)


def get_state() -> AppState:
    """The session's :class:`AppState` (created on first use)."""
    if KEY not in st.session_state:
        st.session_state[KEY] = AppState()
    return st.session_state[KEY]


def _bundle_param(path: str) -> str:
    from core.config import REPO_ROOT

    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def query_params_of(state: AppState) -> dict[str, str]:
    """The shareable part of the state as URL query parameters.

    ``scene`` (sample scene id), ``bbox`` (west,south,east,north in degrees) or ``aoi`` (``whole``
    or a GeoJSON geometry in lon/lat), ``model`` (bundle folder, relative to the repository when
    inside it), ``reference`` (label product key) and ``precision`` (only when ``bf16``).
    """
    out = {"scene": state.scene_id or "", "model": _bundle_param(state.bundle_path), "reference": state.reference,
           "precision": state.precision if state.precision == "bf16" else ""}
    if state.aoi_mode == "Bounding box" and state.bbox_text.strip():
        out["bbox"] = state.bbox_text.replace(" ", "")
    elif state.aoi_mode == "Whole scene":
        out["aoi"] = "whole"
    elif state.aoi_geojson:
        geo = state.aoi_geojson
        out["aoi"] = geo if isinstance(geo, str) else json.dumps(geo, separators=(",", ":"))
    return {k: v for k, v in out.items() if v}


def apply_query_params(state: AppState, params: Mapping[str, str], session: MutableMapping[str, Any]) -> None:
    """Restore scene, AOI, model and reference from a shared link (values are checked by the pages).

    Args:
        state: The session's state (filled in place).
        params: The URL's query parameters.
        session: ``st.session_state``, to seed the GeoJSON text box.
    """
    from core.config import REPO_ROOT

    if params.get("scene"):
        state.scene_id, state.from_link = params["scene"], True
    if params.get("precision") == "bf16":
        state.precision = "bf16"
    if params.get("model"):
        p = Path(params["model"])
        p = p if p.is_absolute() else REPO_ROOT / p
        if (p / "card.json").exists():
            state.bundle_path = str(p)
    if params.get("reference"):
        state.reference = params["reference"]
    if params.get("bbox"):
        state.aoi_mode, state.bbox_text = "Bounding box", params["bbox"].replace(",", ", ")
    elif params.get("aoi") == "whole":
        state.aoi_mode = "Whole scene"
    elif params.get("aoi"):
        state.aoi_mode, state.aoi_geojson = "GeoJSON", params["aoi"]
        session["geojson"] = params["aoi"]


ANALYSIS_PAGES = frozenset({"compare", "metrics", "accuracy", "export", "correct"})
"""Pages that show the last run: their link reopens that run, not Explore's newer selection."""


def page_query_params(state: AppState, page: str = "") -> dict[str, str]:
    """The query string of ``page``: the analysis it shows on :data:`ANALYSIS_PAGES`, else Explore's selection.

    Args:
        state: The session's state.
        page: The page's ``url_path`` (``"compare"``, ...; ``""`` for Explore).
    """
    a = state.analysis
    if page in ANALYSIS_PAGES and a is not None and a.link:
        return {**a.link, "reference": state.reference}
    return query_params_of(state)


def sync_query_params(state: AppState, *, write: bool, page: str = "") -> None:
    """Read the URL into the state on a session's first run; with ``write``, mirror the state into the URL.

    Args:
        state: The session's state.
        write: Write the URL (after the page ran) instead of reading it.
        page: ``url_path`` of the page that ran (see :func:`page_query_params`).
    """
    if not state.url_applied:
        state.url_applied = True
        apply_query_params(state, {k: st.query_params[k] for k in st.query_params}, st.session_state)
        return
    if write:
        # written on every run of every page: a page switch clears the browser's query string while the
        # server-side copy may still hold the old values, so comparing with it would skip the write
        st.query_params.from_dict(page_query_params(state, page))
