"""One typed session-state object for the whole app (no loose ``st.session_state`` keys)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
    job: TrainingJob | None = None  # the training run this session started (or the same browser started before a reload)
    ee_start: str = "2021-06-01"
    ee_end: str = "2021-08-31"  # inclusive last date (summer 2021)
    ee_cloud: float = 0.6
    change: Any = None
    report_html: str | None = None
    url_applied: bool = False
    from_link: bool = False  # the session was opened from a link naming a scene (pages offer Run model for it)
    owner_token: str = ""  # random, names this session as a run's starter when the browser sends no XSRF cookie
    kept: dict = field(default_factory=dict)  # result name -> [id of the object, age (order it appeared), bytes] (see keep_within_budget)
    kept_count: int = 0
    memory_notice: str = ""  # the last "dropped to stay within the budget" sentence


def get_state() -> AppState:
    """The session's :class:`AppState` (created on first use), its kept results held to :func:`session_budget_mb`.

    Every page run starts here (``app/main.py``), so a result stored by the previous run is measured, and older
    results beyond the budget are dropped (:func:`keep_within_budget`) with a notice (``st.toast``).
    """
    if KEY not in st.session_state:
        st.session_state[KEY] = AppState()
    state = st.session_state[KEY]
    dropped = keep_within_budget(state, st.session_state)
    if dropped:
        st.toast(state.memory_notice, icon=":material/memory:")
    return state


DEFAULT_SESSION_MB = 1024
"""Memory a session may keep in results (MB, 2**20 bytes) unless ``$LULC_SESSION_MB`` says otherwise."""
RESULT_MIN_BYTES = 2**20
"""A session value this large or larger (1 MB) counts as a kept result; smaller ones (widget values, settings) do not."""
STATE_RESULTS = {"analysis": "the Explore run", "change": "the Change page's result", "report_html": "the accuracy report"}
"""The :class:`AppState` fields that hold results, with their names in the notice."""
RESULT_NAMES = {"correct_work": "the Correct page's feature cache and rounds", "_ee_layer_cache": "the Earth Engine map layers"}
"""Names in the notice of results other pages keep in ``st.session_state`` (any other large value is "the <key> result")."""


def session_budget_mb() -> int:
    """The per-session memory budget for kept results, MB: ``$LULC_SESSION_MB`` or :data:`DEFAULT_SESSION_MB`.

    A value that is not a positive whole number falls back to the default.
    """
    try:
        mb = int(os.environ.get("LULC_SESSION_MB", DEFAULT_SESSION_MB))
    except ValueError:
        return DEFAULT_SESSION_MB
    return mb if mb > 0 else DEFAULT_SESSION_MB


def nbytes(obj: Any, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Bytes of the arrays and strings an object holds, each object counted once.

    Numpy arrays and tensors count their ``nbytes``; dataclasses, mappings, sequences and the attributes of the
    project's own objects are followed. An estimate of what dropping the object frees: a shared array is counted once per call (pass one ``_seen`` to
    several calls to count it only for the first).
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen or _depth > 12 or obj is None or isinstance(obj, (bool, int, float, complex, type)):
        return 0
    seen.add(id(obj))
    if isinstance(obj, (str, bytes, bytearray, memoryview)):
        return len(obj)
    size = getattr(obj, "nbytes", None)
    if isinstance(size, int):  # numpy arrays, torch tensors; a numpy view counts the array it views, once
        base = obj
        while isinstance(getattr(base, "base", None), np.ndarray):
            base = base.base
        if base is obj:
            return size
        return nbytes(base, seen, _depth)
    if isinstance(obj, Mapping):
        return sum(nbytes(v, seen, _depth + 1) for v in list(obj.values()))
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(nbytes(v, seen, _depth + 1) for v in list(obj))
    if is_dataclass(obj):
        return sum(nbytes(getattr(obj, f.name, None), seen, _depth + 1) for f in fields(obj))
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict) and type(obj).__module__.split(".")[0] in ("app", "core", "models", "trainer"):
        return sum(nbytes(v, seen, _depth + 1) for v in list(attrs.values()))
    return 0


def _results(state: AppState, session: MutableMapping[str, Any]) -> dict[str, Any]:
    out = {name: getattr(state, name) for name in STATE_RESULTS if getattr(state, name) is not None}
    for key in list(session.keys()):
        if key != KEY and not str(key).startswith("$$"):  # Streamlit's own widget ids
            try:
                out[f"session:{key}"] = session[key]
            except (KeyError, AttributeError):
                continue
    return out


def keep_within_budget(state: AppState, session: MutableMapping[str, Any], budget_mb: int | None = None) -> list[str]:
    """Drop the session's older results while what it keeps exceeds the budget; returns what was dropped.

    The results are the Explore run (``state.analysis``), the Change page's result, the accuracy report and any
    value of ``st.session_state`` of :data:`RESULT_MIN_BYTES` or more (the Correct page's feature cache, Earth Engine
    layers). Each is measured once when it appears (:func:`nbytes`, shared arrays counted for the newer result) and
    given an age. While their total is above the budget, the oldest is dropped, except the current analysis and the
    newest result, which always stay (each is bounded on its own: the AOI limit, the Correct page's cache limit). So
    a new Explore run frees the Correct page's work on the previous one, which held that analysis alive.

    Args:
        state: The session's state; ``state.kept`` holds the ages and sizes, ``state.memory_notice`` gets the sentence.
        session: ``st.session_state`` (values other pages keep).
        budget_mb: The budget (default :func:`session_budget_mb`).

    Returns:
        The names of the dropped results as the notice says them (empty when nothing was dropped).
    """
    budget = (budget_mb or session_budget_mb()) * 2**20
    results = _results(state, session)
    if {n: v[0] for n, v in state.kept.items()} != {n: id(o) for n, o in results.items() if n in state.kept} or any(
            n not in state.kept and not n.startswith("session:") for n in results):
        state.kept = _measure(state, results)
    else:  # nothing new among the kept results: only small session values may have appeared
        fresh = {n: o for n, o in results.items() if n not in state.kept}
        if any(nbytes(o) >= RESULT_MIN_BYTES for o in fresh.values()):
            state.kept = _measure(state, results)
    kept = state.kept
    total = sum(v[2] for v in kept.values())
    if total <= budget:
        return []
    newest = max(kept, key=lambda n: kept[n][1])
    dropped = []
    for name in sorted(kept, key=lambda n: kept[n][1]):
        if total <= budget:
            break
        if name in (newest, "analysis"):
            continue
        if name.startswith("session:"):
            key = name.removeprefix("session:")
            try:
                del session[key]
            except Exception:  # a widget's value cannot be deleted: it stays and counts
                continue
            label = RESULT_NAMES.get(key, f"the {key} result")
        else:
            setattr(state, name, None)
            label = STATE_RESULTS[name]
        size = kept.pop(name)[2]
        total -= size
        dropped.append(f"{label} ({size / 2**20:,.0f} MB)")
    if dropped:
        one = len(dropped) == 1
        state.memory_notice = (f"To keep this session within its {budget / 2**20:,.0f} MB memory budget, {', '.join(dropped)} "
                               f"{'was' if one else 'were'} dropped; run {'it' if one else 'them'} again to see {'it' if one else 'them'}.")
    return dropped


def _measure(state: AppState, results: dict[str, Any]) -> dict[str, list]:
    """Ages and sizes of the results: a known object keeps its age, a new one gets the next.

    Sizes are measured with one ``seen`` set, the current analysis first and then oldest to newest, so an array
    shared with the analysis counts for the analysis (dropping the other result does not free it) and one held by a
    stale result alone counts for that result.
    """
    ages = {}
    for name, obj in results.items():
        old = state.kept.get(name)
        if old is not None and old[0] == id(obj):
            ages[name] = old[1]
        else:
            state.kept_count += 1
            ages[name] = state.kept_count
    seen: set[int] = set()
    out = {}
    for name in sorted(results, key=lambda n: (n != "analysis", ages[n])):
        size = nbytes(results[name], seen)
        if name.startswith("session:") and size < RESULT_MIN_BYTES:
            continue
        out[name] = [id(results[name]), ages[name], size]
    return out


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
