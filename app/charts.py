"""Plotly figures and tables of a comparison (pure builders: data in, figure out; unit-tested)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.evaluation.comparison import CompareResult


def _nan_to_none(values) -> list[float | None]:
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else float(v) for v in values]


def iou_bar(result: CompareResult) -> go.Figure:
    """Per-class IoU as bars in the classes' colours, mIoU as a dashed line."""
    m = result.metrics
    fig = go.Figure(go.Bar(x=list(m.class_names), y=_nan_to_none(m.iou), marker_color=result.scheme.colors,
                           text=[f"{v:.2f}" if v == v else "–" for v in m.iou], textposition="outside", name="IoU"))
    if m.miou == m.miou:
        fig.add_hline(y=m.miou, line_dash="dash", annotation_text=f"mIoU {m.miou:.3f}")
    fig.update_layout(title="Per-class IoU", yaxis={"range": [0, 1.05], "title": "IoU"}, xaxis_title="class", showlegend=False,
                      margin={"t": 50, "b": 40})
    return fig


def prf_bar(result: CompareResult) -> go.Figure:
    """Precision, recall and F1 per class as grouped bars."""
    m = result.metrics
    fig = go.Figure()
    for name, vals in (("precision", m.precision), ("recall", m.recall), ("F1", m.f1)):
        fig.add_bar(x=list(m.class_names), y=_nan_to_none(vals), name=name)
    fig.update_layout(title="Precision, recall and F1", barmode="group", yaxis={"range": [0, 1.05]}, margin={"t": 50, "b": 40})
    return fig


def confusion_heatmap(result: CompareResult, normalize: bool = True) -> go.Figure:
    """Confusion matrix (rows = reference, columns = prediction), coloured by share of row.

    With ``normalize`` the cells read the share of the row (%), else the pixel counts; the hover
    gives both. Annotations are large enough to read, in white on dark cells.
    """
    m = result.metrics
    cm = m.confusion.astype(float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    text = [[(f"{100 * s:.0f}%" if c else "") if normalize else (f"{int(c):,}" if c else "") for s, c in zip(srow, row, strict=True)]
            for srow, row in zip(share, cm, strict=True)]
    custom = [[f"{int(c):,} px, {100 * s:.1f}% of row" for s, c in zip(srow, row, strict=True)] for srow, row in zip(share, cm, strict=True)]
    fig = go.Figure(go.Heatmap(z=share, x=list(m.class_names), y=list(m.class_names), colorscale="Blues", text=text,
                               customdata=custom, texttemplate="%{text}", textfont={"size": 14},
                               hovertemplate="reference %{y}<br>predicted %{x}<br>%{customdata}<extra></extra>",
                               zmin=0, zmax=1, colorbar={"title": "share of row", "tickformat": ".0%"}))
    what = "share of the reference row" if normalize else "pixels"
    fig.update_layout(title=f"Confusion matrix (rows: reference; numbers: {what})", xaxis_title="predicted",
                      yaxis={"title": "reference", "autorange": "reversed"}, margin={"t": 50}, height=520)
    return fig


def areas_table(result: CompareResult) -> pd.DataFrame:
    """Class areas of prediction and reference in km^2 and % (pixels with both only)."""
    return pd.DataFrame(
        [{"class": a.name, "predicted km²": round(a.predicted_km2, 4), "reference km²": round(a.reference_km2, 4),
          "predicted %": round(a.predicted_pct, 2), "reference %": round(a.reference_pct, 2)} for a in result.areas]
    )


def aoi_areas_table(class_ids, class_names, labels: np.ndarray, mask: np.ndarray, aoi_km2: float) -> pd.DataFrame:
    """Predicted area of each class over the whole AOI (every predicted pixel, with or without a reference label)."""
    inside = labels[mask & (labels != 255)]
    px_km2 = aoi_km2 / max(int(mask.sum()), 1)
    counts = {int(k): int(v) for k, v in zip(*np.unique(inside, return_counts=True), strict=True)}
    total = max(sum(counts.values()), 1)
    return pd.DataFrame([{"class": n, "predicted km² (whole AOI)": round(counts.get(int(i), 0) * px_km2, 3),
                          "predicted % (whole AOI)": round(100 * counts.get(int(i), 0) / total, 1)} for i, n in zip(class_ids, class_names, strict=True)])


def metrics_table(result: CompareResult) -> pd.DataFrame:
    """Per-class IoU, precision, recall, F1, pixel counts and whether the class enters mIoU."""
    d = result.metrics.to_dict()
    avg = set(d["miou_classes"])
    return pd.DataFrame([{"class": k, **v, "in_miou": k in avg} for k, v in d["per_class"].items()])


def display_table(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A table for the screen: fractions to ``digits`` decimals, counts with separators, "–" where not defined."""
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (int, np.integer)):
            return f"{int(v):,}"
        if isinstance(v, (float, np.floating)):
            return f"{float(v):,.{digits}f}"
        return str(v)

    return df.astype(object).map(cell)


def training_curves(log: pd.DataFrame) -> go.Figure:
    """Loss and validation mIoU by epoch from a Lightning CSV log (``metrics.csv``)."""
    fig = go.Figure()
    if "epoch" in log:
        for col, axis in (("train_loss_epoch", "y"), ("val_loss", "y"), ("val_miou", "y2")):
            if col in log:
                s = log.dropna(subset=[col])
                fig.add_scatter(x=s["epoch"], y=s[col], mode="lines+markers", name=col, yaxis=axis)
    fig.update_layout(title="Training progress", xaxis_title="epoch", yaxis_title="loss",
                      yaxis2={"title": "val mIoU", "overlaying": "y", "side": "right", "range": [0, 1]}, margin={"t": 50})
    return fig
