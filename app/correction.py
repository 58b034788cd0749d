"""The Correct page's work: points and polygons on the current analysis, rounds of correction, exports.

The model stays frozen; its last feature map and base probabilities are cached once per analysis
(:func:`core.correction.cache.build_cache_raster`, by the run policy, as Explore ran the model), and each
*Retrain* fits a logistic head on the user's samples plus replay samples of the base map
(:class:`core.correction.session.CorrectionSession`; Robinson et al. AAAI 2020, microsoft/landcover; PEARL).
``python -m trainer finetune`` calls the same functions (:mod:`core.correction.card`,
:func:`models.features.save_corrected_bundle`), so the corrections CSV saved here reproduces the bundle saved
here (same seed: same labels).

Everything the page keeps lives in ``st.session_state`` under keys starting with ``correct_``: the
:class:`Work` of the current analysis under :data:`KEY`, the widgets under ``correct_*`` keys.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from app import services
from app.state import Analysis
from core.config import runs_dir
from core.correction import MAX_POINTS, CorrectionError
from core.correction.cache import build_cache_raster, with_prior_features
from core.correction.card import card_fields, class_colors, replay_head
from core.correction.points import PointSet, write_points_csv, write_points_gpkg
from core.correction.session import CorrectionSession, FeatureCache, Round, is_own_scheme
from core.errors import LulcError
from core.io.outputs import atomic_write_bytes, check_outputs

__all__ = ["KEY", "Work", "Sample", "Checkpoint", "POLYGON_SAMPLE", "SAVE_ROOT", "get_work", "prepare", "add_point",
           "add_polygon", "add_class", "merge_classes", "undo", "clear", "suggest", "retrain", "go_back", "counts_table",
           "area_table", "agreement_table", "paint", "changed_rgba", "imagery_rgba", "points_csv_bytes", "points_gpkg_bytes",
           "map_cog_bytes", "map_package_bytes", "save_bundle", "cache_bytes_estimate", "MAX_CACHE_BYTES"]

KEY = "correct_work"
"""``st.session_state`` key of the :class:`Work` of the current analysis."""
POLYGON_SAMPLE = 100
"""Pixels drawn at random from each polygon (the issue's cap), so a large polygon does not outweigh the clicks."""
SUGGEST_K = 20
"""Points suggested per press of *Suggest points*."""
SEED = 0
"""Seed of the held-back split, the replay draw and the polygon samples; ``finetune --seed 0`` is the same."""
SAVE_ROOT: Path | None = None
"""Where *Save corrected model* writes bundles; ``None``: :func:`core.config.runs_dir` (``$LULC_RUNS_DIR`` or ``runs/``)."""
MAX_CACHE_BYTES = 3 * 2**30
"""Largest feature cache the page builds (features of every AOI pixel in memory)."""
CHANGED = (255, 0, 255, 255)
"""RGBA of a changed pixel (magenta) in the *Changed pixels* panel."""


@dataclass(frozen=True)
class Sample:
    """One labelled pixel: clicked, typed, or drawn at random from a polygon.

    Attributes:
        row: Row on the analysis' grid.
        col: Column.
        lon: Longitude of the pixel centre (WGS 84 degrees).
        lat: Latitude of the pixel centre.
        name: Class name.
        group: The action that added it (one click, or one polygon); :func:`undo` removes the latest group.
        polygon: Index into :attr:`Work.polygons`, or ``None`` for a click.
        round_no: The round it was given in (1 before the first *Retrain*).
        time: ISO time (UTC) it was given.
    """

    row: int
    col: int
    lon: float
    lat: float
    name: str
    group: int
    polygon: int | None = None
    round_no: int = 1
    time: str = ""


@dataclass(frozen=True)
class Checkpoint:
    """A state the user can go back to: the base model (``round is None``) or one fitted round.

    Attributes:
        round: The fitted round (``None``: the base model's map).
        labels: uint8 (H, W) indices into :attr:`classes`, 255 outside the AOI or without data.
        classes: The map's class names.
        samples: The samples the round was fitted on.
        polygons: The polygons drawn by then.
        seconds: Wall time of the fit and the new map.
    """

    round: Round | None
    labels: np.ndarray
    classes: tuple[str, ...]
    samples: tuple[Sample, ...] = ()
    polygons: tuple[dict, ...] = ()
    seconds: float = 0.0

    @property
    def title(self) -> str:
        """``"Base model"`` or ``"Round N"``."""
        return "Base model" if self.round is None else f"Round {self.round.number}"


@dataclass
class Work:
    """The correction of one analysis.

    Attributes:
        analysis: The analysis it belongs to (a new analysis starts a new work).
        cache: Features and base probabilities of every pixel of the analysis.
        colors: Class name -> colour of every class offered (the model's, then the user's).
        added: Classes the user added.
        merges: Class -> class it was merged into.
        samples: The labelled pixels, in the order given (the order of the CSV export).
        polygons: Drawn polygons: ``{"geojson", "geometry" (lon/lat shapely), "class", "round", "time", "pixels"}``.
        session: The rounds (:class:`core.correction.session.CorrectionSession`).
        checkpoints: Base model first, then one per round.
        suggestions: (lon, lat) of the suggested pixels.
        last_click: The last map click handled (st_folium repeats it on every rerun).
        last_drawing: The last drawing handled.
        cache_seconds: Wall time of the feature cache.
        groups: Actions so far (ids of :attr:`Sample.group`).
        prior_note: Why the Dynamic World port's features are not used for the class priors of classes of the
            user's own (empty when they are, or before the first such round).
        prior_tried: Whether :func:`attach_prior_features` ran.
    """

    analysis: Analysis
    cache: FeatureCache
    colors: dict[str, str]
    added: list[str] = field(default_factory=list)
    merges: dict[str, str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    polygons: list[dict] = field(default_factory=list)
    session: CorrectionSession | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    suggestions: list[tuple[float, float]] = field(default_factory=list)
    last_click: tuple[float, float] | None = None
    last_drawing: str | None = None
    cache_seconds: float = 0.0
    groups: int = 0
    prior_note: str = ""
    prior_tried: bool = False

    @property
    def grid(self):
        """(CRS, transform, H, W) of the analysis."""
        img = self.analysis.image
        return img.crs, img.transform, img.height, img.width

    @property
    def classes(self) -> list[str]:
        """The classes the user may pick: the model's (less those merged away), then the added ones."""
        return [c for c in self.colors if c not in self.merges]

    @property
    def current(self) -> Checkpoint:
        """The latest checkpoint (the base model before the first round)."""
        return self.checkpoints[-1]

    def round_no(self) -> int:
        """The number the next round will get."""
        return len(self.checkpoints)


def cache_bytes_estimate(analysis: Analysis) -> int:
    """Bytes of the feature cache of an analysis: (F + 2 K0) x H x W x 4 (features, log-probabilities, probabilities)."""
    from models.features import base_of, feature_count

    bundle = services.get_bundle(analysis.bundle_path)
    base, _, names = base_of(bundle)
    return (feature_count(base) + 2 * len(names)) * analysis.image.height * analysis.image.width * 4


def get_work(analysis: Analysis) -> Work | None:
    """The work of ``analysis`` if its feature cache was built (else ``None``; see :func:`prepare`)."""
    work = st.session_state.get(KEY)
    return work if work is not None and work.analysis is analysis else None


def prepare(analysis: Analysis, progress=None) -> Work:
    """Build the feature cache of an analysis (once) and start its work.

    Args:
        analysis: The current analysis (any source with a georeference).
        progress: Called with (passes done, passes total).

    Returns:
        The work, also kept under :data:`KEY`.

    Raises:
        CorrectionError: The analysis has no georeference, or its cache would exceed :data:`MAX_CACHE_BYTES`.
        BandError, InputError: The image cannot be the model's input.
    """
    from core.classes import get_scheme
    from models.features import base_of, feature_count, feature_forward, head_weights

    if analysis.image.crs is None:
        raise CorrectionError(f"{analysis.scene_id} has no georeference, so points cannot be placed on a map; "
                              "pick a georeferenced scene, an upload with a CRS or Earth Engine on Explore.")
    need = cache_bytes_estimate(analysis)
    if need > MAX_CACHE_BYTES:
        raise CorrectionError(f"this AOI's feature cache would need {need / 2**30:.1f} GiB (limit {MAX_CACHE_BYTES / 2**30:.0f} GiB); "
                              "run a smaller AOI on Explore.")
    t0 = time.perf_counter()
    bundle = services.get_bundle(analysis.bundle_path)
    base, _, base_names = base_of(bundle)
    decision = services.input_decision(analysis)
    cache = build_cache_raster(analysis.image, bundle.card, feature_forward(bundle), decision=decision,
                               channels=feature_count(base) + len(base_names), base_names=base_names, mask=analysis.aoi_mask,
                               progress=progress)
    head = head_weights(bundle)
    if head is not None:  # a corrected bundle: its own map is the one to correct (and to replay)
        cache = replay_head(cache, *head, tuple(bundle.card.class_names))
    scheme = get_scheme(services.read_card(analysis.bundle_path).scheme_name)
    colors = dict(zip(scheme.names, scheme.colors, strict=True))
    colors = {n: colors.get(n) or class_colors((n,))[n] for n in cache.base_names}
    labels = np.where(cache.valid, cache.base_probs.argmax(axis=0), 255).astype(np.uint8)
    work = Work(analysis, cache, colors, session=CorrectionSession(cache), cache_seconds=time.perf_counter() - t0,
                checkpoints=[Checkpoint(None, labels, tuple(cache.base_names))])
    st.session_state[KEY] = work
    return work


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _to_pixels(work: Work, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.transform import rowcol
    from rasterio.warp import transform as warp

    crs, tr, _, _ = work.grid
    xs, ys = warp("EPSG:4326", crs, list(np.atleast_1d(lon)), list(np.atleast_1d(lat)))
    r, c = rowcol(tr, xs, ys, op=np.floor)
    return np.atleast_1d(np.asarray(r, np.int64)), np.atleast_1d(np.asarray(c, np.int64))


def _centres(work: Work, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.transform import xy
    from rasterio.warp import transform as warp

    crs, tr, _, _ = work.grid
    xs, ys = xy(tr, rows, cols)
    lon, lat = warp(crs, "EPSG:4326", list(np.atleast_1d(xs)), list(np.atleast_1d(ys)))
    return np.asarray(lon, float), np.asarray(lat, float)


def _check_room(work: Work, n: int) -> None:
    if len(work.samples) + n > MAX_POINTS:
        raise CorrectionError(f"that would make {len(work.samples) + n:,} points, more than the {MAX_POINTS:,} a correction set may "
                              "have; undo or clear some first.")


def _check_class(work: Work, name: str) -> str:
    name = work.merges.get(name, name)
    if name not in work.classes:
        raise CorrectionError(f"class {name!r} is not offered; pick one of {', '.join(work.classes)} or add it.")
    return name


def add_point(work: Work, lat: float, lon: float, name: str) -> Sample:
    """Label the pixel under (lat, lon) with class ``name``.

    Raises:
        CorrectionError: The point lies outside the analysed image or the AOI, on a pixel without data, the class
            is not offered, or the set would exceed :data:`~core.correction.MAX_POINTS`; nothing is added.
    """
    name = _check_class(work, name)
    _check_room(work, 1)
    _, _, h, w = work.grid
    r, c = (int(v[0]) for v in _to_pixels(work, np.array([lon]), np.array([lat])))
    if not (0 <= r < h and 0 <= c < w):
        raise CorrectionError(f"the point ({lat:.5f}, {lon:.5f}) lies outside the analysed image; click inside the AOI.")
    if not work.analysis.aoi_mask[r, c]:
        raise CorrectionError(f"the point ({lat:.5f}, {lon:.5f}) lies outside the AOI; click inside the red outline.")
    if not work.cache.valid[r, c]:
        raise CorrectionError(f"the point ({lat:.5f}, {lon:.5f}) lies on a pixel without data; click on the imagery.")
    clon, clat = _centres(work, np.array([r]), np.array([c]))
    work.groups += 1
    s = Sample(r, c, float(clon[0]), float(clat[0]), name, work.groups, None, work.round_no(), _now())
    work.samples.append(s)
    return s


def add_polygon(work: Work, geojson: dict, name: str) -> int:
    """Label up to :data:`POLYGON_SAMPLE` random pixels inside a drawn polygon (lon/lat GeoJSON) with ``name``.

    Returns:
        The number of pixels added.

    Raises:
        CorrectionError: Not a polygon, no pixel with data of the AOI inside it, an unknown class, or too many points.
    """
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom
    from shapely.geometry import shape

    name = _check_class(work, name)
    geom = geojson.get("geometry", geojson) if isinstance(geojson, dict) else None
    if not isinstance(geom, dict) or geom.get("type") not in ("Polygon", "MultiPolygon"):
        raise CorrectionError("draw a polygon or rectangle (other shapes are not used).")
    crs, tr, h, w = work.grid
    inside = geometry_mask([transform_geom("EPSG:4326", crs, geom)], out_shape=(h, w), transform=tr, invert=True)
    inside &= work.cache.valid
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        raise CorrectionError("the polygon covers no pixel with data inside the AOI; draw it over the imagery inside the red outline.")
    rng = np.random.default_rng([SEED, work.groups + 1])
    pick = np.sort(rng.choice(idx, min(POLYGON_SAMPLE, idx.size), replace=False))
    _check_room(work, pick.size)
    rows, cols = np.unravel_index(pick, (h, w))
    lon, lat = _centres(work, rows, cols)
    work.groups += 1
    when, rnd = _now(), work.round_no()
    work.polygons.append({"geojson": geom, "geometry": shape(geom), "class": name, "round": rnd, "time": when, "pixels": int(pick.size),
                          "group": work.groups})
    k = len(work.polygons) - 1
    work.samples.extend(Sample(int(r), int(c), float(a), float(b), name, work.groups, k, rnd, when)
                        for r, c, a, b in zip(rows, cols, lon, lat, strict=True))
    return int(pick.size)


def add_class(work: Work, name: str, color: str) -> str:
    """Offer a class of the user's own (name and ``#rrggbb`` colour).

    Raises:
        CorrectionError: An empty name, or a name already offered.
    """
    name = (name or "").strip()
    if not name:
        raise CorrectionError("give the new class a name.")
    if name in work.colors and name not in work.merges:
        raise CorrectionError(f"class {name!r} is already offered; pick it in the list.")
    work.merges.pop(name, None)
    work.colors[name] = color
    work.added.append(name)
    return name


def merge_classes(work: Work, source: str, target: str) -> int:
    """Merge class ``source`` into ``target``: its points become ``target``'s, and its pixels join ``target`` at *Retrain*.

    Returns:
        The number of points relabelled.

    Raises:
        CorrectionError: The same class twice, or a class not offered.
    """
    if source == target:
        raise CorrectionError("pick two different classes to merge.")
    for c in (source, target):
        if c not in work.classes:
            raise CorrectionError(f"class {c!r} is not offered.")
    work.merges = {k: (target if v == source else v) for k, v in work.merges.items()}
    work.merges[source] = target
    n = sum(s.name == source for s in work.samples)
    work.samples = [Sample(s.row, s.col, s.lon, s.lat, target, s.group, s.polygon, s.round_no, s.time) if s.name == source else s
                    for s in work.samples]
    for p in work.polygons:
        if p["class"] == source:
            p["class"] = target
    work.session.merges = dict(work.merges)
    return n


def undo(work: Work) -> int:
    """Remove the latest click or polygon; returns the number of points removed (0 when there is none)."""
    if not work.samples:
        return 0
    last = work.samples[-1].group
    n = sum(s.group == last for s in work.samples)
    work.samples = [s for s in work.samples if s.group != last]
    work.polygons = [p for p in work.polygons if p.get("group") != last]
    work.samples = [s if s.polygon is None else Sample(s.row, s.col, s.lon, s.lat, s.name, s.group,
                                                       next(i for i, p in enumerate(work.polygons) if p["group"] == s.group),
                                                       s.round_no, s.time) for s in work.samples]
    return n


def clear(work: Work) -> None:
    """Remove every point and polygon (the rounds stay as checkpoints)."""
    work.samples, work.polygons, work.suggestions = [], [], []


def suggest(work: Work, k: int = SUGGEST_K) -> int:
    """Suggest the ``k`` most uncertain pixels of the current map (min-margin, spread out); returns how many."""
    rows, cols = work.session.suggest(k)
    lon, lat = _centres(work, rows, cols) if rows.size else (np.zeros(0), np.zeros(0))
    work.suggestions = list(zip(lon.tolist(), lat.tolist(), strict=True))
    return len(work.suggestions)


def _labels(work: Work) -> np.ndarray:
    return work.session.class_map()


def attach_prior_features(work: Work) -> None:
    """Cache the Dynamic World port's features of the AOI for the class priors of classes of the user's own, once.

    As ``python -m trainer finetune`` does (:func:`trainer.finetune.prior_cache`). The port reads the image as it
    did for the analysis' local Dynamic World reference (that run's input decision, ``classes.meta``). Nothing
    is attached when the model is the port itself, the analysis has no such reference (the port cannot read the
    image) or the two caches would exceed :data:`MAX_CACHE_BYTES`; :attr:`Work.prior_note` then says why, and
    the priors come from the head alone.
    """
    from models.features import base_of, feature_count, feature_forward

    work.prior_tried = True
    a = work.analysis
    if services.read_card(a.bundle_path).arch == "dynamicworld":
        return
    alone = "so your classes' shares of the AOI come from your points' model alone."
    reference = a.references.get("dw_model")
    if reference is None:
        work.prior_note = f"The Dynamic World port cannot read this image, {alone}"
        return
    port = services.get_bundle(str(services.DW_BUNDLE))
    pb, _, pnames = base_of(port)
    channels = feature_count(pb) + len(pnames)
    need = channels * a.image.height * a.image.width * 4
    if work.cache.nbytes + need > MAX_CACHE_BYTES:
        work.prior_note = f"The Dynamic World port's features of this AOI would need {need / 2**30:.1f} GiB more, {alone}"
        return
    try:
        pc = build_cache_raster(a.image, port.card, feature_forward(port), decision=reference[0].meta["input_decision"],
                                channels=channels, base_names=pnames, mask=a.aoi_mask)
    except LulcError as exc:  # the port refuses this input after all: said on the page
        work.prior_note = f"The Dynamic World port cannot run on this image ({exc}), {alone}"
        return
    work.cache = with_prior_features(work.cache, pc, port.card.name)
    work.session.cache = work.cache


def retrain(work: Work) -> Checkpoint:
    """Fit a new round on all samples (:meth:`CorrectionSession.fit`) and make its map; it becomes the latest checkpoint.

    Raises:
        CorrectionError: One point of a class, one class only, points outside or on nodata, too many points: the
            previous round stays current.
    """
    if not work.samples:
        raise CorrectionError("add points first: pick a class and click on the map, or draw a polygon.")
    t0 = time.perf_counter()
    rows = np.array([s.row for s in work.samples], np.int64)
    cols = np.array([s.col for s in work.samples], np.int64)
    work.session.merges = dict(work.merges)
    names = [s.name for s in work.samples]
    if not work.prior_tried and is_own_scheme(work.cache.base_names, names, work.merges):
        attach_prior_features(work)
    rnd = work.session.fit(rows, cols, names, seed=SEED)
    cp = Checkpoint(rnd, _labels(work), rnd.classes, tuple(work.samples), tuple(dict(p) for p in work.polygons),
                    time.perf_counter() - t0)
    work.checkpoints.append(cp)
    work.suggestions = []
    return cp


def go_back(work: Work, index: int) -> Checkpoint:
    """Make checkpoint ``index`` (0 = base model) the latest again, dropping the rounds after it.

    A round's points and polygons come back with it; going back to the base model keeps the current points.
    """
    index = max(0, min(index, len(work.checkpoints) - 1))
    while len(work.checkpoints) > index + 1:
        work.checkpoints.pop()
        work.session.undo()
    cp = work.current
    if cp.round is not None:
        work.samples = list(cp.samples)
        work.polygons = [dict(p) for p in cp.polygons]
        work.groups = max([work.groups, *(s.group for s in work.samples)])
    work.suggestions = []
    return cp


def counts_table(work: Work) -> list[dict]:
    """Rows ``{class, clicked, from polygons, points}`` of the corrections, one per class with points."""
    rows = []
    for c in dict.fromkeys(s.name for s in work.samples):
        clicked = sum(s.name == c and s.polygon is None for s in work.samples)
        poly = sum(s.name == c and s.polygon is not None for s in work.samples)
        rows.append({"class": c, "clicked": clicked, "from polygons": poly, "points": clicked + poly})
    return rows


def _pixel_km2(work: Work) -> np.ndarray:
    from core.io.raster import pixel_area_m2

    crs, tr, h, w = work.grid
    return np.broadcast_to(pixel_area_m2(crs, tr, h, w).reshape(-1, 1) / 1e6, (h, w))


def _areas(cp: Checkpoint, km2: np.ndarray) -> dict[str, float]:
    ok = cp.labels != 255
    sums = np.bincount(cp.labels[ok].astype(np.int64), weights=km2[ok], minlength=len(cp.classes))
    return {c: float(sums[i]) for i, c in enumerate(cp.classes)}


def area_table(work: Work, before: Checkpoint, after: Checkpoint) -> list[dict]:
    """Per class: area before, after and the change (km², rounded to 0.01), classes by name (merged and own ones too)."""
    km2 = _pixel_km2(work)
    a, b = _areas(before, km2), _areas(after, km2)
    out = []
    for c in dict.fromkeys([*a, *b]):
        x, y = a.get(c, 0.0), b.get(c, 0.0)
        if x or y:
            out.append({"class": c, f"{before.title} (km²)": round(x, 2), f"{after.title} (km²)": round(y, 2), "change (km²)": round(y - x, 2)})
    return out


def changed_share(before: Checkpoint, after: Checkpoint) -> tuple[np.ndarray, float]:
    """Bool (H, W) of pixels whose class name changed, and their share of the pixels with a class."""
    names_b = np.array([*before.classes, ""], dtype=object)
    names_a = np.array([*after.classes, ""], dtype=object)
    lb = np.where(before.labels == 255, len(before.classes), before.labels)
    la = np.where(after.labels == 255, len(after.classes), after.labels)
    changed = names_b[lb] != names_a[la]
    ok = after.labels != 255
    return changed & ok, float(changed[ok].mean()) if ok.any() else 0.0


def agreement_table(rnd: Round) -> list[dict]:
    """Per class with held-back points: how many and the share of them the round's map agrees with ("all" last).

    Empty when no point was held back (a class needs 5 points or more, see :func:`core.correction.session.fit_correction`).
    """
    rows = [{"class": c, "held back": rnd.held_back[c], "agreement": round(rnd.agreement[c], 3)}
            for c in rnd.classes if rnd.held_back.get(c, 0) and not np.isnan(rnd.agreement.get(c, float("nan")))]
    if rows and "all" in rnd.agreement:
        rows.append({"class": "all", "held back": sum(r["held back"] for r in rows), "agreement": round(rnd.agreement["all"], 3)})
    return rows


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def colors_of(work: Work, classes: tuple[str, ...]) -> dict[str, str]:
    """A colour for each class of a map (the user's choice, else the model's, else :func:`class_colors`)."""
    return class_colors(classes, {c: work.colors[c] for c in classes if c in work.colors})


def paint(work: Work, cp: Checkpoint) -> np.ndarray:
    """uint8 RGBA (H, W, 4) of a checkpoint's map in its classes' colours (transparent without a class)."""
    col = colors_of(work, cp.classes)
    lut = np.zeros((256, 4), np.uint8)
    for i, c in enumerate(cp.classes):
        lut[i] = (*_rgb(col[c]), 255)
    return lut[cp.labels]


def imagery_rgba(work: Work) -> np.ndarray:
    """True-colour (or the first available composite) RGBA of the analysis, dimmed outside the AOI."""
    from app import views
    from core.products.render import COMPOSITES, composite

    a = work.analysis
    options = views.composite_options(a)
    if not options:
        return np.zeros((a.image.height, a.image.width, 4), np.uint8)
    img = composite(a.image, COMPOSITES[options[0]])
    img[..., 3] = np.where(a.aoi_mask, img[..., 3], 60)
    return img


def changed_rgba(work: Work, before: Checkpoint, after: Checkpoint) -> np.ndarray:
    """The imagery in grey with the pixels whose class changed in magenta (:data:`CHANGED`)."""
    img = imagery_rgba(work).copy()
    grey = img[..., :3].mean(axis=2, keepdims=True).astype(np.uint8)
    img[..., :3] = grey
    changed, _ = changed_share(before, after)
    img[changed] = CHANGED
    return img


def _point_set(samples) -> PointSet:
    return PointSet(np.array([s.lon for s in samples], float), np.array([s.lat for s in samples], float),
                    tuple(s.name for s in samples), "EPSG:4326")


def _via_file(suffix: str, write) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"corrections{suffix}"
        write(path)
        return path.read_bytes()


def points_csv_bytes(work: Work, checkpoint: Checkpoint | None = None) -> bytes:
    """The samples as CSV ``lon,lat,class`` (WGS 84 pixel centres, in the order given), for ``finetune --points``.

    Args:
        work: The work.
        checkpoint: Export the samples this round was fitted on (default: the current samples).

    Raises:
        CorrectionError: No points yet.
    """
    samples = list(checkpoint.samples) if checkpoint is not None else work.samples
    if not samples:
        raise CorrectionError("there are no points to export yet.")
    return _via_file(".csv", lambda p: write_points_csv(_point_set(samples), p))


def points_gpkg_bytes(work: Work, checkpoint: Checkpoint | None = None) -> bytes:
    """The corrections as a GeoPackage: layer ``corrections`` (points) and ``polygons``, with class id, name, colour, round, time.

    Args:
        work: The work.
        checkpoint: Export the samples and polygons of this round (default: the current ones).

    Raises:
        CorrectionError: No points yet.
    """
    samples = list(checkpoint.samples) if checkpoint is not None else work.samples
    polygons = list(checkpoint.polygons) if checkpoint is not None else work.polygons
    if not samples:
        raise CorrectionError("there are no points to export yet.")
    names = list(dict.fromkeys([*work.classes, *(s.name for s in samples)]))
    ids = {n: i for i, n in enumerate(names)}
    colors = class_colors(tuple(names), work.colors)
    polys = [{"geometry": p["geometry"], "class": p["class"], "round": p["round"], "time": p["time"]} for p in polygons]
    return _via_file(".gpkg", lambda p: write_points_gpkg(_point_set(samples), p, class_ids=ids, colors=colors,
                                                          round_no=[s.round_no for s in samples],
                                                          times=[s.time for s in samples], polygons=polys))


def map_cog_bytes(work: Work, cp: Checkpoint | None = None) -> bytes:
    """A checkpoint's map (default the latest) as a Cloud-Optimized GeoTIFF: class ids 0..K-1 with a colour table, 255 nodata."""
    from core.io.raster import GeoRaster, cog_bytes

    cp = cp or work.current
    a = work.analysis
    col = colors_of(work, cp.classes)
    raster = GeoRaster(cp.labels[None].copy(), a.image.crs, a.image.transform, 255, ("class",),
                       meta={"classes": ",".join(cp.classes)})
    return cog_bytes(raster, colormap={i: col[c] for i, c in enumerate(cp.classes)})


def map_package_bytes(work: Work, cp: Checkpoint | None = None, state=None) -> bytes:
    """A checkpoint's map (default the latest) with the sidecars every class map gets, zipped.

    The zip holds ``<scene>_corrected.tif`` (uint8 class ids 0..K-1 in the checkpoint's classes, colour table,
    255 nodata, provenance tags), ``.tif.aux.xml`` (raster attribute table naming the user's classes, so QGIS and
    ArcGIS show them), ``.qml`` (QGIS paletted style) and ``.json`` (STAC Item with checksums), built by
    :func:`app.exports.class_map_files` as for the Export page. The provenance is the corrected run's
    (:func:`app.exports.analysis_provenance`) with the bundle named ``<base> + correction, <round>``; its
    ``LULC_BUNDLE_SHA256`` is the base bundle's weights (a correction not saved has no weights file; the
    saved bundle's card records that hash as ``base_sha256``).

    Args:
        work: The correction session.
        cp: The checkpoint (default the current one).
        state: The app session (Earth Engine cloud threshold), or ``None``.

    Returns:
        The zip's bytes.

    Raises:
        FileNotFoundError: The base bundle has no ``model.safetensors``.
    """
    from dataclasses import replace

    from app import exports
    from core.io.raster import GeoRaster

    cp = cp or work.current
    a = work.analysis
    col = colors_of(work, cp.classes)
    raster = GeoRaster(cp.labels[None].copy(), a.image.crs, a.image.transform, 255, ("class",))
    prov = exports.analysis_provenance(a, state)
    prov = replace(prov, bundle=f"{prov.bundle} + correction, {cp.title}")
    files = exports.class_map_files(f"{a.scene_id}_corrected", raster, {i: (c, col[c]) for i, c in enumerate(cp.classes)}, prov)
    return exports.zip_bytes(files)


def save_bundle(work: Work, root: str | Path | None = None) -> Path:
    """Write the latest round as a corrected bundle in ``root`` (default :data:`SAVE_ROOT`, else ``runs_dir()``), named by date and time.

    The folder ``<base bundle>-corrected-YYYYMMDD-HHMMSS`` holds the bundle (``model.safetensors``, ``card.json``;
    :func:`models.features.save_corrected_bundle`) and the corrections it was fitted on (``corrections.csv``,
    ``corrections.gpkg``), so ``python -m trainer finetune --points corrections.csv`` reproduces it.

    Raises:
        CorrectionError: No round fitted yet.
        OutputError: The folder cannot be written.
    """
    from models.features import base_of, save_corrected_bundle

    cp = work.current
    if cp.round is None:
        raise CorrectionError("retrain at least once before saving a corrected model.")
    bundle = services.get_bundle(work.analysis.bundle_path)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(root or SAVE_ROOT or runs_dir()) / f"{Path(work.analysis.bundle_path).name}-corrected-{stamp}"
    check_outputs({"corrected bundle": out / "model.safetensors"}, [Path(work.analysis.bundle_path) / "model.safetensors"])
    _, base_t, base_names = base_of(bundle)
    used = {s.name for s in cp.samples}
    classes, correction = card_fields(cp.round, name=out.name, base_bundle=bundle.path, base_class_names=base_names, base_temperature=base_t,
                                      base_training=bundle.card.training, rounds=cp.round.number,
                                      colors={c: v for c, v in work.colors.items() if c in cp.round.classes},
                                      merges={k: v for k, v in work.merges.items() if k in base_names or k in used})
    correction["scene"] = work.analysis.scene_id
    notes = f"{bundle.card.name} corrected on the Correct page with {len(cp.samples)} points on {work.analysis.scene_id}"
    save_corrected_bundle(bundle, cp.round.head.weight, cp.round.head.bias, out, classes=classes, correction=correction, notes=notes)
    atomic_write_bytes(out / "corrections.csv", points_csv_bytes(work, cp))  # what this round was fitted on
    atomic_write_bytes(out / "corrections.gpkg", points_gpkg_bytes(work, cp))
    return out


MAX_MARKERS = 2000
"""Clicked points drawn on the map at most (polygons are drawn as outlines, not as their samples)."""


def build_map(work: Work, *, polygons: bool, opacity: float = 0.6):
    """The folium map: the imagery, the latest map, the AOI, the points and polygons in class colours, suggestions.

    Args:
        work: The work.
        polygons: Offer the polygon/rectangle drawing tool (else clicks add points).
        opacity: Opacity of the map over the imagery.

    Returns:
        A :class:`folium.Map` (:func:`app.maps.build_map`).
    """
    import folium

    from app import maps

    a = work.analysis
    cp = work.current
    fmap = maps.build_map(services.sample_scenes(), selected=a.scene_id, draw=polygons, aoi_geojson=a.aoi_geojson,
                          overlays=[("Imagery", imagery_rgba(work), a.image.crs, a.image.transform, 1.0, "imagery"),
                                    (f"Map ({cp.title})", paint(work, cp), a.image.crs, a.image.transform, opacity)])
    fp = a.image.footprint_lonlat()
    if fp and fp[0] < fp[2]:
        fmap.fit_bounds([(fp[1], fp[0]), (fp[3], fp[2])])  # the AOI fills the map: points are placed on pixels
    col = class_colors(tuple(dict.fromkeys([*work.classes, *(s.name for s in work.samples)])), work.colors)
    for p in work.polygons:
        folium.GeoJson(p["geojson"], tooltip=f"{p['class']} ({p['pixels']} pixels)",
                       style_function=lambda _, c=col.get(p["class"], "#000000"): {"color": c, "weight": 2, "fillOpacity": 0.15}).add_to(fmap)
    clicked = [s for s in work.samples if s.polygon is None][-MAX_MARKERS:]
    for s in clicked:
        folium.CircleMarker((s.lat, s.lon), radius=5, color="#000000", weight=1, fill=True, fill_color=col.get(s.name, "#000000"),
                            fill_opacity=1.0, tooltip=s.name, className="correct-point").add_to(fmap)
    for lon, lat in work.suggestions:
        folium.CircleMarker((lat, lon), radius=7, color="#ffffff", weight=2, dash_array="3", fill=False, className="correct-suggestion",
                            tooltip="suggested: the model is least sure here; click it and label it").add_to(fmap)
    return fmap


def handle_map(work: Work, out: dict | None, name: str) -> str | None:
    """Take a new click (a point) or drawing (a polygon's sample) from st_folium's answer.

    st_folium repeats its last answer on every rerun, so an answer already handled is ignored.

    Args:
        work: The work.
        out: What :func:`streamlit_folium.st_folium` returned.
        name: The class picked.

    Returns:
        ``"added"`` when something was added, else ``None``.

    Raises:
        CorrectionError: The point or polygon cannot be used (see :func:`add_point`, :func:`add_polygon`).
    """
    out = out or {}
    click = out.get("last_clicked")
    if click and click.get("lat") is not None:
        key = (round(float(click["lat"]), 7), round(float(click["lng"]), 7))
        if key != work.last_click:
            work.last_click = key
            add_point(work, key[0], key[1], name)
            return "added"
    drawing = out.get("last_active_drawing")
    if drawing and drawing.get("geometry"):
        import json

        key = json.dumps(drawing["geometry"], sort_keys=True)
        if key != work.last_drawing:
            work.last_drawing = key
            add_polygon(work, drawing["geometry"], name)
            return "added"
    return None


def parse_latlon(text: str) -> tuple[float, float]:
    """``"52.49, 12.60"`` -> (lat, lon).

    Raises:
        CorrectionError: Not two numbers, or outside -90..90 / -180..180.
    """
    parts = [p for p in (text or "").replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise CorrectionError(f"give the point as latitude, longitude in degrees, e.g. 52.49, 12.60 (got {text!r}).") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise CorrectionError(f"{lat}, {lon} is not a latitude, longitude in degrees.")
    return lat, lon
