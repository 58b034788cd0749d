"""Pieces of page UI used by several pages."""

from __future__ import annotations

import datetime as dt
import gc
from typing import TYPE_CHECKING

import streamlit as st

from app import services
from app.navigation import page
from app.state import Analysis, AppState
from core.errors import LulcError

if TYPE_CHECKING:  # core.evaluation imports torch (torchmetrics): Explore imports this module and starts without it
    from core.evaluation.comparison import CompareResult


def link_summary(state: AppState) -> str:
    """The analysis a shared link names, in words: scene, AOI and model."""
    if state.aoi_mode == "Bounding box" and state.bbox_text.strip():
        aoi = f"bounding box {state.bbox_text}"
    elif state.aoi_mode == "Whole scene":
        aoi = "whole scene"
    else:
        aoi = "a GeoJSON polygon" if state.aoi_geojson else "no AOI"
    return f"scene **{state.scene_id}** · AOI {aoi} · model {services.bundle_label(state.bundle_path)}"


def with_progress(text: str, work, where: str, step_text=lambda done, total: f"Tile {done} of {total}"):
    """Run ``work(step)`` under a progress bar; errors become one message on the page, never a traceback.

    Args:
        text: The bar's text before the first step.
        work: Called with ``step(done, total)`` (counts, e.g. tiles); returns the result.
        where: What ran, for the crash log of an unexpected error (:func:`app.services.report_unexpected`).
        step_text: The bar's text after each step.

    Returns:
        ``(result, bar)``; ``(None, None)`` after a :class:`core.errors.LulcError` (its sentence shown with
        ``st.error``) or a bug (a short message and the crash log's path); the bar is then removed.

    A full garbage collection follows the work: the app turns off Streamlit's collection after every
    rerun (``runner.postScriptGC`` in ``.streamlit/config.toml``, which cost the first page 0.1-0.5 s), so
    reference cycles left by the long jobs, the ones that allocate whole rasters, are freed here instead.
    """
    bar = st.progress(0.0, text=text)
    try:
        return work(lambda done, total: bar.progress(done / total, text=step_text(done, total))), bar
    except LulcError as exc:
        bar.empty()
        st.error(str(exc))
    except Exception as exc:  # a bug, not the user's input: short message, traceback in a log file
        bar.empty()
        st.error(services.report_unexpected(exc, where))
    finally:
        gc.collect()
    return None, None


def _run_from_link(state: AppState) -> None:
    """Offer *Run model* for the selection a shared link restored; run it on a click (the result goes into ``state``)."""
    slot = st.empty()  # the offer is cleared once the run it offers is on the page
    with slot.container():
        st.info(f"This link opens {link_summary(state)}. Press Run model to make that analysis here, "
                "or change the selection on Explore.")
        if not st.button("Run model", type="primary", key="run_link"):
            return
        a, _ = with_progress("Running the model…", lambda step: services.run_analysis(state, step), "Run model from a link")
        if a is None:
            return
    slot.empty()
    a.selection = state.selection = services.selection_of(state, "Sample pack", state.scene_id)
    a.finished = dt.datetime.now().strftime("%H:%M:%S")


def require_analysis(state: AppState) -> Analysis:
    """The current analysis, or a pointer to Explore and a stop of the page when there is none.

    A session opened from a link that names a scene (``?scene=...&bbox=...``) gets *Run model* for that
    selection here, so a link to any page reopens that page with the same analysis.
    """
    if state.analysis is None and state.from_link and state.scene_id:
        _run_from_link(state)
    if state.analysis is None:
        if not state.from_link:
            st.info("Run the model on the Explore page first.")
        st.page_link(page("explore"), label="Go to Explore", icon=":material/map:")
        st.stop()
    return state.analysis


def model_reference_warning(reference: str | None, where=st) -> None:
    """Say so when the chosen reference is a model's output (Dynamic World), not ground truth."""
    if reference and services.reference_is_model(reference):
        where.warning("The reference is the output of a model (Dynamic World, Brown et al. 2022), not ground truth: "
                      "agreement with it measures how alike two models are, not accuracy.")


def reference_picker(state: AppState, analysis: Analysis, where=st) -> str | None:
    """Select box of the analysis' reference label products; stores the choice in ``state``.

    Returns ``None`` (with a note) when the source has no reference labels (an uploaded GeoTIFF).
    """
    refs = services.reference_options(analysis)
    if not refs:
        where.info("This source has no reference labels, so there is nothing to compare with; "
                   "the sample pack and Earth Engine provide them.")
        return None
    if state.reference not in refs:
        state.reference = refs[0]
    state.reference = where.selectbox("Reference labels", refs, index=refs.index(state.reference),
                                      format_func=lambda k: services.LABEL_TITLES.get(k, k), key="reference")
    return state.reference


def comparison(analysis: Analysis, product: str | None) -> CompareResult | None:
    """The comparison with ``product`` (``None`` without a reference), or an error message and a stop."""
    if product is None:
        return None
    try:
        return services.compare_with(analysis, product)
    except LulcError as exc:
        st.error(str(exc))
        st.stop()


def run_caption(state: AppState, analysis: Analysis, where=st) -> None:
    """Name the run a page shows (scene or file, AOI, model, time), and say so when Explore's selection has moved on."""
    where.caption(f"Last run on Explore: {analysis.describe(services.bundle_label(analysis.bundle_path))}")
    if analysis.selection and state.selection and analysis.selection != state.selection:
        where.info("The selection on Explore has changed since this run; what is shown here is the last run above, "
                   "not the current selection. Press Run model on Explore to update it.")
