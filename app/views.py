"""Pictures and small HTML pieces the pages show, built from an analysis (no Streamlit calls)."""

from __future__ import annotations

import numpy as np

from app.state import Analysis
from core.classes import ClassScheme, get_scheme
from core.evaluation.comparison import CompareResult
from core.products.render import (
    COMPOSITES,
    agreement_rgba,
    class_rgba,
    composite,
    confidence_rgba,
    panels_png,
    required_bands,
)


def composite_options(analysis: Analysis) -> list[str]:
    """Composites whose bands the analysed image has."""
    have = set(analysis.image.band_names)
    return [k for k, bands in COMPOSITES.items() if required_bands(bands) <= have]


def panels(analysis: Analysis, result: CompareResult | None, composite_name: str, model_scheme: str,
           reference_scheme: str | None) -> dict[str, np.ndarray]:
    """The side-by-side pictures: imagery, prediction, reference, agreement, confidence (RGBA).

    Without a comparison (no reference labels) only imagery, prediction and confidence.
    """
    img = composite(analysis.image, COMPOSITES[composite_name])
    inside = analysis.aoi_mask
    img[..., 3] = np.where(inside, img[..., 3], 60)
    pred = analysis.prediction.classes.data[0]
    conf = analysis.prediction.confidence.data[0]
    out = {composite_name: img, "Prediction": class_rgba(pred, get_scheme(model_scheme))}
    if result is not None and reference_scheme is not None:
        out["Reference"] = class_rgba(result.reference_ids, get_scheme(reference_scheme))
        out["Agreement (green) / disagreement (red)"] = agreement_rgba(result.prediction, result.reference)
    out["Confidence (dark low, yellow high)"] = confidence_rgba(conf, pred != 255)
    return out


def side_by_side_png(pictures: dict[str, np.ndarray]) -> bytes:
    """PNG of all panels next to each other."""
    return panels_png(list(pictures.items()))


def legend_html(scheme: ClassScheme) -> str:
    """Inline HTML legend: a colour chip and the name of each class."""
    chips = "".join(
        f'<span style="display:inline-block;margin:2px 10px 2px 0"><span style="display:inline-block;width:12px;height:12px;'
        f'background:{c.color};border:1px solid #555;margin-right:4px;vertical-align:middle"></span>{c.name}</span>'
        for c in scheme.classes
    )
    return f'<div style="font-size:0.85em">{chips}</div>'
