"""One typed session-state object for the whole app (no loose ``st.session_state`` keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
        image: ``core.raster.GeoRaster`` of the AOI window (all scene bands).
        prediction: ``core.inference.ClassMap`` on the same grid.
        aoi_mask: Bool (H, W), True inside the AOI.
        aoi_km2: AOI area in km^2.
        aoi_geojson: The AOI polygon (lon/lat) or ``None`` for a whole scene without georeference.
        seconds: Wall time of the prediction.
        references: Label product -> (uint8 ``GeoRaster`` on the image's grid, scheme name).
        source: ``"samples"``, ``"earth_engine"`` or ``"upload"``.
        comparisons: Reference product -> ``core.analysis.CompareResult``, filled on first use.
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
    reference: str = "dw"
    composite: str = "True colour (B4, B3, B2)"
    overlay: str = "Prediction"
    opacity: float = 0.7
    analysis: Analysis | None = None
    job: TrainingJob | None = None
    ee_start: str = "2021-06-01"
    ee_end: str = "2021-09-01"
    ee_cloud: float = 0.6


def get_state() -> AppState:
    """The session's :class:`AppState` (created on first use)."""
    if KEY not in st.session_state:
        st.session_state[KEY] = AppState()
    return st.session_state[KEY]
