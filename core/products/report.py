"""A self-contained HTML report of one analysis: maps with legends, charts, tables, provenance.

The report is one ``.html`` file with every picture embedded as a base64 PNG (no external files,
scripts or fonts), so it can be mailed, archived or printed as is. Charts are drawn with
matplotlib (Agg backend, no display needed). Provenance names what a reader needs to redo the
numbers: source scenes or Earth Engine collections and dates, the model bundle and the SHA-256 of
its files, offsets and processing levels applied, and the software version.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.products.render import to_png

__all__ = ["bundle_hash", "software_version", "MapFigure", "Report", "render_html", "area_chart_png", "reliability_png",
           "transition_chart_png"]


def bundle_hash(path: str | Path) -> str:
    """SHA-256 (hex) over a bundle folder's ``card.json`` and ``model.safetensors`` (in that order).

    Raises:
        FileNotFoundError: A file of the bundle is missing.
    """
    h = hashlib.sha256()
    for name in ("card.json", "model.safetensors"):
        with open(Path(path) / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def software_version() -> str:
    """``lulc-explorer <version>`` from the installed metadata or ``pyproject.toml``, plus the git commit if known."""
    from core.config import REPO_ROOT

    version = "unknown"
    try:
        import tomllib

        version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, ValueError):
        pass
    commit = ""
    head = REPO_ROOT / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = REPO_ROOT / ".git" / ref[5:]
            commit = ref_file.read_text().strip()[:12] if ref_file.exists() else ""
        else:
            commit = ref[:12]
    except OSError:
        pass
    return f"lulc-explorer {version}" + (f" (git {commit})" if commit else "")


@dataclass(frozen=True)
class MapFigure:
    """A map picture with its legend.

    Attributes:
        title: Caption.
        rgba: uint8 (H, W, 4) or (H, W, 3) picture.
        legend: (label, "#rrggbb") entries; empty for continuous pictures (then ``note`` says the scale).
        note: Free text under the picture.
    """

    title: str
    rgba: np.ndarray
    legend: Sequence[tuple[str, str]] = ()
    note: str = ""


@dataclass
class Report:
    """Content of a report, filled by the caller and rendered by :func:`render_html`.

    Attributes:
        title: Page title.
        summary: (label, value) headline figures.
        maps: Map pictures with legends.
        charts: (caption, PNG bytes).
        tables: (caption, DataFrame, float format) tables.
        provenance: (key, value) provenance entries.
        notes: Paragraphs of caveats (plain text).
    """

    title: str
    summary: list[tuple[str, str]] = field(default_factory=list)
    maps: list[MapFigure] = field(default_factory=list)
    charts: list[tuple[str, bytes]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame, str]] = field(default_factory=list)
    provenance: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}.maps{display:flex;flex-wrap:wrap;gap:16px}.map{max-width:340px}.map img{width:100%;image-rendering:pixelated;border:1px solid #999}
.legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 .6em;vertical-align:middle;border:1px solid #666}
.summary td{text-align:left}.note{color:#555;font-size:.9em}"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document (UTF-8 text)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(report.title)}</h1>",
             f"<p class='note'>Generated {datetime.now(UTC).isoformat(timespec='seconds')} by {e(software_version())}.</p>"]
    if report.summary:
        parts.append("<table class='summary'>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in report.summary) + "</table>")
    if report.maps:
        parts.append("<h2>Maps</h2><div class='maps'>")
        for m in report.maps:
            legend = "".join(f"<span style='background:{e(c)}'></span>{e(n)}" for n, c in m.legend)
            parts.append(f"<figure class='map'>{_img(to_png(np.ascontiguousarray(m.rgba)), m.title)}<figcaption><b>{e(m.title)}</b>"
                         f"<div class='legend'>{legend}</div><div class='note'>{e(m.note)}</div></figcaption></figure>")
        parts.append("</div>")
    if report.charts:
        parts.append("<h2>Charts</h2>")
        parts.extend(f"<figure>{_img(png, cap)}<figcaption>{e(cap)}</figcaption></figure>" for cap, png in report.charts)
    for caption, df, fmt in report.tables:
        parts.append(f"<h2>{e(caption)}</h2>")
        parts.append(df.to_html(float_format=lambda v, f=fmt: f.format(v), na_rep="–", border=0, index=not isinstance(df.index, pd.RangeIndex)))
    if report.notes:
        parts.append("<h2>Notes</h2>" + "".join(f"<p class='note'>{e(n)}</p>" for n in report.notes))
    parts.append("<h2>Provenance</h2><table class='summary'>"
                 + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in report.provenance) + "</table></body></html>")
    return "\n".join(parts)


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def area_chart_png(class_names: Sequence[str], mapped: Sequence[float], estimated: Sequence[float], ci: Sequence[float],
                   colors: Sequence[str] | None = None, unit: str = "km²") -> bytes:
    """Bar chart of pixel-counted vs estimated area per class with 95 % interval whiskers (PNG)."""
    plt = _pyplot()
    x = np.arange(len(class_names))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.bar(x - 0.2, mapped, 0.4, color="#bbbbbb", label="mapped (pixel count)")
    ax.bar(x + 0.2, estimated, 0.4, yerr=ci, capsize=3, color=list(colors) if colors else "#4477aa", label="estimated ± 95 % CI")
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    ax.set_ylabel(unit)
    ax.legend(frameon=False)
    return _fig_png(fig)


def reliability_png(bins: Mapping[str, pd.DataFrame], title: str = "Reliability diagram") -> bytes:
    """Reliability diagram: accuracy against confidence per bin, one line per labelled set of bins (PNG).

    Args:
        bins: Label -> output of :func:`core.evaluation.calibration.reliability_bins`.
        title: Chart title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", label="perfectly calibrated")
    for label, df in bins.items():
        ax.plot(df["confidence"], df["accuracy"], marker="o", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (mean top probability in bin)")
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return _fig_png(fig)


def transition_chart_png(net: pd.DataFrame, colors: Sequence[str] | None = None) -> bytes:
    """Bar chart of per-class net change (km²) from :meth:`core.products.change.ChangeResult.net_change` (PNG)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(net["class"], net["net_km2"], color=list(colors) if colors else "#4477aa")
    ax.axhline(0, color="#333333", linewidth=0.8)
    ax.set_ylabel("net change (km²)")
    ax.tick_params(axis="x", rotation=30)
    return _fig_png(fig)


def analysis_report(
    *,
    title: str,
    image,
    prediction,
    scheme,
    comparison=None,
    reference=None,
    reference_scheme=None,
    reference_name: str = "",
    estimate=None,
    estimate_source: str = "",
    calibration=None,
    change=None,
    change_rgba: np.ndarray | None = None,
    provenance: Sequence[tuple[str, str]] = (),
) -> Report:
    """Assemble the report of one analysis (used by the app and by ``python -m trainer report``).

    Args:
        title: Report title.
        image: ``GeoRaster`` of the imagery (for a true-colour picture when it has B4, B3, B2).
        prediction: ``core.inference.streaming.ClassMap``.
        scheme: The model's ``ClassScheme``.
        comparison: ``core.evaluation.comparison.CompareResult`` against the reference labels, or ``None``.
        reference: Reference label ``GeoRaster`` (ids of ``reference_scheme``), or ``None``.
        reference_scheme: Its ``ClassScheme``.
        reference_name: Name of the reference product for captions.
        estimate: ``core.evaluation.accuracy.AreaEstimate`` (areas in km^2), or ``None``.
        estimate_source: Where the reference sample came from (said in the report).
        calibration: ``core.evaluation.calibration.CalibrationReport``, or ``None``.
        change: ``core.products.change.ChangeResult``, or ``None``.
        change_rgba: Picture of the change map (H, W, 4), with ``change``.
        provenance: (key, value) entries: sources and dates, bundle and hash, levels and offsets.

    Returns:
        The report, ready for :func:`render_html`.
    """
    from core.products.render import class_rgba, composite, confidence_rgba

    rep = Report(title)
    cm = prediction.classes
    # the AOI, not its bounding window: pixels outside the AOI (and nodata) carry no class
    classified = float((cm.data[0] != 255).mean()) if cm.data.size else 0.0
    rep.summary.append(("Area analysed", f"{cm.area_km2() * classified:.3f} km² (pixels with a class inside the AOI)"))
    if {"B4", "B3", "B2"} <= set(image.band_names):
        rep.maps.append(MapFigure("Image (true colour B4, B3, B2)", composite(image, ("B4", "B3", "B2"))))
    legend = list(zip(scheme.names, scheme.colors, strict=True))
    rep.maps.append(MapFigure("Prediction", class_rgba(cm.data[0], scheme), legend))
    if reference is not None and reference_scheme is not None:
        rep.maps.append(MapFigure(f"Reference ({reference_name})", class_rgba(reference.data[0], reference_scheme),
                                  list(zip(reference_scheme.names, reference_scheme.colors, strict=True))))
    rep.maps.append(MapFigure("Confidence (top class probability, calibrated with the card temperature)",
                              confidence_rgba(prediction.confidence.data[0], cm.data[0] != 255), note="dark = low, bright = high"))
    if comparison is not None:
        m = comparison.metrics
        rep.summary.append((f"Pixel agreement with {reference_name} (map vs map)",
                            f"OA {m.overall_accuracy:.3f}, mIoU {m.miou:.3f}, kappa {m.kappa:.3f} on {m.pixels:,} pixels"))
        rep.tables.append((f"Pixel agreement with {reference_name} (map vs map, not an accuracy estimate)",
                           pd.DataFrame({"class": list(m.class_names), "IoU": m.iou, "precision": m.precision, "recall": m.recall}), "{:.3f}"))
    if estimate is not None:
        rep.summary.append(("Overall accuracy (stratified estimate)", f"{estimate.overall:.3f} ± {estimate.overall_ci:.3f} (95 % CI)"))
        rep.summary.append(("Reference sample", estimate_source))
        colors = comparison.scheme.colors if comparison is not None else None
        rep.charts.append(("Class area: pixel-counted map area vs good-practice estimate with 95 % confidence interval (km²)",
                           area_chart_png(estimate.class_names, estimate.mapped_area, estimate.area, estimate.area_ci, colors)))
        rep.tables.append(("Area and accuracy estimates with 95 % confidence intervals (Olofsson et al. 2014)", estimate.table(), "{:.4f}"))
        rep.tables.append(("Error matrix of estimated area proportions (rows = map, columns = reference)", estimate.matrix_table(), "{:.4f}"))
    if calibration is not None:
        rep.summary.append(("Expected calibration error",
                            f"{calibration.ece_before:.4f} raw softmax, {calibration.ece_after:.4f} with T = {calibration.temperature:.2f}"))
        rep.charts.append(("Reliability diagram (accuracy vs confidence per bin)",
                           reliability_png({"T = 1 (raw softmax)": calibration.bins_before,
                                            f"T = {calibration.temperature:.2f}": calibration.bins_after})))
    if change is not None:
        rep.summary.append(("Change", f"{change.changed_km2:.3f} km² of {change.total_km2:.3f} km² changed class "
                                      f"({change.labels[0]} → {change.labels[1]})"))
        if change_rgba is not None:
            rep.maps.append(MapFigure(f"Change {change.labels[0]} → {change.labels[1]} (new class where changed)", change_rgba,
                                      list(zip(change.class_names, change.colors, strict=True))))
        rep.charts.append(("Net change per class (km²)", transition_chart_png(change.net_change(), change.colors)))
        rep.tables.append(("From-to change matrix (km²)", change.matrix_table("km2"), "{:.4f}"))
        rep.tables.append(("Net change per class", change.net_change(), "{:.4f}"))
    rep.provenance += list(provenance) + [("Software", software_version())]
    rep.notes.append("Area estimates follow the stratified estimators of Olofsson et al. (2014, Remote Sensing of Environment 148: "
                     "42-57) with the map classes as strata; intervals are ±1.96 standard errors. Pixel-counted areas are shown for "
                     "comparison only: they are biased by the map's omission and commission errors.")
    return rep
