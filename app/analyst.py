"""Calls of the Accuracy & area and Change pages into core (assessment, change, calibration, report).

Pages render what these functions return; the numbers come from :mod:`core.evaluation.accuracy`,
:mod:`core.products.change`, :mod:`core.evaluation.calibration`, :mod:`core.products.polygons` and :mod:`core.products.report`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import services
from app.state import Analysis
from core.classes import get_scheme, scheme_of
from core.config import REPO_ROOT, data_dir
from core.evaluation.accuracy import (
    AreaEstimate,
    SamplingDesign,
    design_sample,
    estimate_from_points,
    label_points,
    read_points,
    sample_points,
    write_points,
)
from core.evaluation.calibration import confidence_calibration
from core.evaluation.comparison import CompareResult
from core.inference.streaming import ClassMap
from core.products.change import ChangeResult, change_between
from core.products.render import class_rgba
from core.sources.samples import get_scene, load_image, load_labels, scene_decision, scene_grid

__all__ = ["design", "points_table", "points_file", "read_uploaded_points", "demo_labels", "estimate", "area_chart",
           "reliability", "reliability_chart", "same_grid_scenes", "ChangeRun", "run_change", "sankey", "matrix_chart", "change_matrix_chart", "error_matrix_chart", "net_change_chart",
           "change_picture", "report_html", "polygons_gpkg"]


def _pred_index(result: CompareResult) -> np.ndarray:
    return result.prediction


def design(result: CompareResult, users_accuracy: float, target_se: float, min_per_class: int) -> SamplingDesign:
    """Sampling design with the compared prediction's classes as strata."""
    return design_sample(_pred_index(result), result.scheme.names, users_accuracy, target_se, min_per_class)


def points_table(analysis: Analysis, result: CompareResult, d: SamplingDesign, seed: int) -> pd.DataFrame:
    """The stratified random sample points (lon/lat, map class) of the design."""
    g = analysis.prediction.classes
    return sample_points(_pred_index(result), result.scheme.names, d.per_class, g.transform, g.crs, seed)


def points_file(points: pd.DataFrame, suffix: str, provenance: Mapping[str, str] | None = None) -> bytes:
    """Points as GeoPackage or CSV bytes for a download button, with the map's provenance as columns.

    Args:
        points: From :func:`points_table`.
        suffix: ``.gpkg`` or ``.csv``.
        provenance: The map's provenance tags (:func:`app.exports.provenance_tags`): each becomes a
            text column after the points' own, lower case (``lulc_bundle``, ``lulc_bundle_sha256``,
            ``lulc_software_version``, ``lulc_run_*``, ``lulc_input_name``, ``lulc_input_date``, ...).

    Raises:
        AssessmentError: A GeoPackage of points without lon/lat (a map without CRS).
    """
    import tempfile

    from core.products.provenance import provenance_columns

    cols = provenance_columns(provenance or {})
    table = points.assign(**cols) if cols else points
    with tempfile.TemporaryDirectory() as tmp:
        return write_points(table, Path(tmp) / f"points{suffix}").read_bytes()


def read_uploaded_points(name: str, data: bytes, reference_column: str) -> pd.DataFrame:
    """Read an uploaded labelled-points file (CSV or GeoPackage).

    Raises:
        ValueError: Unknown format or missing columns (message for the user).
    """
    import tempfile

    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"points{suffix}"
        path.write_bytes(data)
        return read_points(path, reference_column)


def demo_labels(points: pd.DataFrame, result: CompareResult) -> pd.DataFrame:
    """Label the points from the reference raster (a demonstration, marked in ``reference_source``)."""
    return label_points(points, result.reference)


def estimate(analysis: Analysis, result: CompareResult, points: pd.DataFrame, reference_column: str = "reference_class") -> AreaEstimate:
    """Good-practice area and accuracy estimates (km^2) from labelled points of the analysis' map."""
    from core.evaluation.metrics import class_areas

    mapped = class_areas(_pred_index(result), result.scheme.num_classes, analysis.prediction.classes.pixel_area_m2())
    return estimate_from_points(points, result.scheme.names, mapped, "map_class", reference_column)


def area_chart(est: AreaEstimate, colors: list[str]) -> go.Figure:
    """Mapped (pixel-counted) vs estimated area per class with 95 % interval error bars."""
    fig = go.Figure()
    fig.add_bar(x=est.class_names, y=list(est.mapped_area), name="mapped (pixel count)", marker_color="#bbbbbb")
    fig.add_bar(x=est.class_names, y=list(np.nan_to_num(est.area)), name="estimated ± 95 % CI", marker_color=colors,
                error_y={"type": "data", "array": list(np.nan_to_num(est.area_ci)), "visible": True})
    fig.update_layout(title="Class area: map vs good-practice estimate (km²)", barmode="group", yaxis_title="km²", margin={"t": 50, "b": 40})
    return fig


def reliability(analysis: Analysis, result: CompareResult) -> tuple[float, pd.DataFrame]:
    """ECE and reliability bins of the confidence map against the reference (compared pixels only)."""
    both = (result.prediction != 255) & (result.reference != 255)
    conf = analysis.prediction.confidence.data[0][both]
    return confidence_calibration(conf, result.prediction[both] == result.reference[both])


def reliability_chart(bins: pd.DataFrame, ece: float, temperature: float) -> go.Figure:
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "#999999"}, name="perfectly calibrated")
    fig.add_scatter(x=list(bins["confidence"]), y=list(bins["accuracy"]), mode="lines+markers", name=f"T = {temperature:.2f}",
                    text=[f"{n:,} px" for n in bins["pixels"]])
    fig.update_layout(title=f"Reliability diagram (ECE {ece:.3f})", xaxis={"title": "confidence", "range": [0, 1]},
                      yaxis={"title": "accuracy", "range": [0, 1]}, margin={"t": 50, "b": 40})
    return fig


def same_grid_scenes(scene_id: str) -> list[str]:
    """Sample scenes on exactly the grid of ``scene_id`` (other dates of the same place), itself included.

    Scenes without a CRS (the DFC2020 patches) have no place on Earth: nothing says two of them show the
    same ground, so they get only themselves (and never become a change pair).
    """
    root = data_dir()
    me = get_scene(scene_id, root)
    crs, tr = scene_grid(me)
    if crs is None:
        return [scene_id]
    out = []
    for s in services.sample_scenes():
        c, t = scene_grid(s)
        if (s.height, s.width) == (me.height, me.width) and c == crs and t.almost_equals(tr, precision=1e-9):
            out.append(s.id)
    return out


@st.cache_resource(show_spinner=False, max_entries=8)
def predict_scene(scene_id: str, bundle_path: str, root: str) -> ClassMap:
    """The bundle's class map of a whole sample scene (cached per scene and model), as Explore and ``predict`` make it.

    Raises:
        BandError, InputError: The scene cannot be the model's input (:func:`core.sources.samples.scene_decision`).
    """
    bundle = services.get_bundle(bundle_path)
    sc = get_scene(scene_id, root)
    return services.classify(load_image(sc, list(sc.bands)), bundle, lambda card: scene_decision(sc, card))


@dataclass
class ChangeRun:
    """A change analysis of the Change page: two dates, the maps used and the result."""

    before: str
    after: str
    maps: str
    bundle_path: str
    result: ChangeResult
    after_map: object


def run_change(before: str, after: str, maps: str, bundle_path: str, progress: Callable[[float, str], None] | None = None) -> ChangeRun:
    """Change between two sample scenes on one grid, from model predictions or Dynamic World labels.

    Raises:
        GridMismatchError: The scenes are not on one grid.
        BundleError: The model lacks bands of the scenes.
    """
    root = str(data_dir())
    maps_by_date = []
    for i, sid in enumerate((before, after)):
        if progress:
            progress(i / 2, f"{'Predicting' if maps == 'model' else 'Reading'} {sid}…")
        if maps == "model":
            maps_by_date.append(predict_scene(sid, bundle_path, root).classes)
        else:
            maps_by_date.append(load_labels(get_scene(sid, root), "dw")[0])
    if progress:
        progress(1.0, "Comparing…")
    scheme = scheme_of(services.get_bundle(bundle_path).card) if maps == "model" else get_scheme("dynamic_world")
    res = change_between(maps_by_date[0], maps_by_date[1], scheme.ids, scheme.names, scheme.colors,
                         (get_scene(before, root).date or before, get_scene(after, root).date or after))
    return ChangeRun(before, after, maps, bundle_path, res, maps_by_date[1])


def sankey(res: ChangeResult, min_pct: float = 0.05) -> go.Figure:
    """Plotly Sankey diagram of the from-to transitions (flows below ``min_pct`` % of the area left out)."""
    k = len(res.class_names)
    total = max(res.total_km2, 1e-12)
    src, dst, val, col = [], [], [], []
    for i in range(k):
        for j in range(k):
            v = float(res.matrix_km2[i, j])
            if 100 * v / total >= min_pct:
                src.append(i)
                dst.append(k + j)
                val.append(v)
                h = res.colors[i].lstrip("#")
                col.append(f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},0.45)")
    labels = [f"{n} ({res.labels[0]})" for n in res.class_names] + [f"{n} ({res.labels[1]})" for n in res.class_names]
    fig = go.Figure(go.Sankey(node={"label": labels, "color": list(res.colors) * 2, "pad": 12},
                              link={"source": src, "target": dst, "value": val, "color": col,
                                    "hovertemplate": "%{source.label} → %{target.label}: %{value:.4f} km²<extra></extra>"}))
    fig.update_layout(title=f"Transitions {res.labels[0]} → {res.labels[1]} (km²)", margin={"t": 50, "b": 20})
    return fig


def matrix_chart(values: np.ndarray, names: list[str], title: str, rows: str, cols: str, unit: str, decimals: int = 3) -> go.Figure:
    """A (K, K) matrix as an annotated heatmap, readable at any page width (a table of K + 1 columns is cut off).

    Args:
        values: Float (K, K) cell values, rows first.
        names: (K,) class names (rows and columns).
        title: Figure title.
        rows: Axis title of the rows.
        cols: Axis title of the columns.
        unit: Unit in the hover text ("km²", "%", "area proportion").
        decimals: Decimals of the cell numbers; empty cells stay blank.
    """
    v = np.nan_to_num(np.asarray(values, float))
    text = [[f"{x:,.{decimals}f}" if x > 0 else "" for x in row] for row in v]
    fig = go.Figure(go.Heatmap(z=np.log10(1 + v / max(float(v.max()), 1e-12) * 1000), x=list(names), y=list(names), text=text,
                               texttemplate="%{text}", textfont={"size": 13}, colorscale="Blues", showscale=False,
                               customdata=[[f"{x:,.{decimals}f}" for x in row] for row in v],
                               hovertemplate=f"%{{y}} → %{{x}}: %{{customdata}} {unit}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=cols, yaxis={"title": rows, "autorange": "reversed"}, margin={"t": 50}, height=520)
    return fig


def change_matrix_chart(res: ChangeResult, unit: str = "km2") -> go.Figure:
    """The from-to matrix as an annotated heatmap (rows: date 1, columns: date 2), in km² or % of the compared area.

    Args:
        res: The change result (``matrix_km2`` (K, K), rows = class at date 1).
        unit: ``"km2"`` (3 decimals) or ``"%"`` (1 decimal) of the compared area.
    """
    m = np.asarray(res.matrix_km2, float)
    vals = m if unit == "km2" else 100 * m / max(res.total_km2, 1e-12)
    label = "km²" if unit == "km2" else "% of the compared area"
    return matrix_chart(vals, list(res.class_names), f"From-to matrix ({label}; rows: {res.labels[0]}, columns: {res.labels[1]})",
                        f"class at {res.labels[0]}", f"class at {res.labels[1]}", label, 3 if unit == "km2" else 1)


def error_matrix_chart(est: AreaEstimate) -> go.Figure:
    """The error matrix of estimated area proportions ``p_ij`` (Olofsson et al. 2014 eq. 4) as an annotated heatmap."""
    return matrix_chart(est.proportions, list(est.class_names), "Error matrix of estimated area proportions (rows: map, columns: reference)",
                        "map class", "reference class", "of the mapped area", 4)


def net_change_chart(res: ChangeResult) -> go.Figure:
    """Per-class net change (km²) as bars in class colours."""
    net = res.net_change()
    fig = go.Figure(go.Bar(x=net["class"], y=net["net_km2"], marker_color=res.colors))
    fig.update_layout(title="Net change per class (km²)", yaxis_title="km²", margin={"t": 50, "b": 40})
    return fig


def change_picture(run: ChangeRun) -> np.ndarray:
    """RGBA picture: the new class where the class changed, transparent elsewhere."""
    scheme = scheme_of(services.get_bundle(run.bundle_path).card) if run.maps == "model" else get_scheme("dynamic_world")
    data = run.after_map.data[0]
    return class_rgba(np.where(run.result.changed, data, 255).astype(np.uint8), scheme)


def report_html(analysis: Analysis, result: CompareResult | None, reference: str | None, est: AreaEstimate | None, est_source: str,
                change: ChangeRun | None = None) -> str:
    """The self-contained HTML report of the current analysis (see :func:`core.products.report.analysis_report`)."""
    from core.products.report import analysis_report, bundle_hash, render_html

    bundle = services.get_bundle(analysis.bundle_path)
    scheme = scheme_of(bundle.card)
    ref = ref_scheme = None
    if reference:
        ref_raster, ref_scheme_name = analysis.references[reference]
        ref, ref_scheme = ref_raster, get_scheme(ref_scheme_name)
    try:
        digest = bundle_hash(analysis.bundle_path)
    except OSError:
        digest = "unavailable"
    try:
        rel = str(Path(analysis.bundle_path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        rel = analysis.bundle_path
    prov = [("Source", f"{analysis.source}: {analysis.scene_id}"), ("AOI", f"{analysis.aoi_km2:.3f} km²"),
            ("AOI GeoJSON (lon/lat)", str(analysis.aoi_geojson)[:400] if analysis.aoi_geojson else "whole scene"),
            ("Model bundle", rel), ("Bundle SHA-256 (card.json + model.safetensors)", digest),
            ("Temperature", f"{float(getattr(bundle.card, 'temperature', 1.0)):.3f}"), ("Bands", ", ".join(bundle.bands)),
            ("Reference labels", services.LABEL_TITLES.get(reference, reference) if reference else "none")]
    try:  # the fields every exported map carries in its tags (LULC_*), so the report and the files can be matched
        from app.exports import analysis_provenance

        p = analysis_provenance(analysis)
        prov[5:5] = [("Weights SHA-256 (model.safetensors; LULC_BUNDLE_SHA256 of the exported maps)", p.bundle_sha256),
                     ("Run policy", ("full frame" if p.full_frame else f"tile {p.tile} px, overlap {p.overlap} px") + f", {p.runtime} {p.precision}"),
                     ("Software version", p.software_version)]
    except OSError:
        pass
    if analysis.source == "samples":
        sc = get_scene(analysis.scene_id, data_dir())
        lvl = sc.info.get("processing_level") if isinstance(sc.info, dict) else None
        prov.insert(1, ("Scene date / level", f"{sc.date}; " + (", ".join(f"{k} {v}" for k, v in lvl.items() if k != "unit")
                                                                 if isinstance(lvl, dict) else sc.level)))
    elif analysis.source == "earth_engine":
        prov.insert(1, ("Earth Engine", "COPERNICUS/S2 harmonized median composite; Dynamic World; ESA WorldCover"))
    ch = change.result if change else None
    rep = analysis_report(title=f"Land-cover analysis: {analysis.scene_id}", image=analysis.image, prediction=analysis.prediction,
                          scheme=scheme, comparison=result, reference=ref, reference_scheme=ref_scheme,
                          reference_name=services.LABEL_TITLES.get(reference, reference or ""), estimate=est, estimate_source=est_source,
                          change=ch, change_rgba=change_picture(change) if change else None, provenance=prov)
    return render_html(rep)


def polygons_gpkg(analysis: Analysis, mmu_ha: float, provenance: Mapping[str, str] | None = None) -> tuple[bytes, int]:
    """The prediction as GeoPackage polygons after the minimum mapping unit; (bytes, polygon count).

    ``provenance``: the map's provenance tags (:func:`app.exports.provenance_tags`), written as columns
    and layer metadata (:func:`core.products.polygons.write_polygons`).
    """
    import tempfile

    from core.products.polygons import class_polygons, write_polygons

    scheme = scheme_of(services.get_bundle(analysis.bundle_path).card)
    layer = class_polygons(analysis.prediction.classes, scheme.ids, scheme.names, mmu_ha)
    with tempfile.TemporaryDirectory() as tmp:
        return write_polygons(layer, Path(tmp) / "lulc.gpkg", provenance).read_bytes(), len(layer)
