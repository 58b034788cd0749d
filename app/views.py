"""Pictures and small HTML pieces the pages show, built from an analysis (no Streamlit calls)."""

from __future__ import annotations

import html

import numpy as np

from app.state import Analysis
from core.classes import ClassScheme, get_scheme
from core.evaluation.comparison import CompareResult
from core.products.render import (
    AGREEMENT_COLOURBLIND,
    COMPOSITES,
    agreement_rgba,
    class_rgba,
    composite,
    confidence_rgba,
    required_bands,
)

AGREEMENT = "Agreement (blue) / disagreement (orange)"
CONFIDENCE = "Confidence (dark low, yellow high)"


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
        out[AGREEMENT] = agreement_rgba(result.prediction, result.reference, colours=AGREEMENT_COLOURBLIND)
    out[CONFIDENCE] = confidence_rgba(conf, pred != 255)
    return out


def side_by_side_png(pictures: dict[str, np.ndarray], model_scheme: str | None = None, reference_scheme: str | None = None) -> bytes:
    """PNG of all panels next to each other at print size (about 2000 px), with a legend under each class map."""
    from core.products.render import panels_figure_png

    legends = {}
    if model_scheme:
        sch = get_scheme(model_scheme)
        legends["Prediction"] = list(zip(sch.names, sch.colors, strict=True))
    if reference_scheme and "Reference" in pictures:
        sch = get_scheme(reference_scheme)
        legends["Reference"] = list(zip(sch.names, sch.colors, strict=True))
    a, d = AGREEMENT_COLOURBLIND
    legends[AGREEMENT] = [("same class", "#{:02x}{:02x}{:02x}".format(*a)), ("different class", "#{:02x}{:02x}{:02x}".format(*d))]
    legends[CONFIDENCE] = [("low (0)", "#440154"), ("0.5", "#21918c"), ("high (1)", "#fde725")]
    return panels_figure_png(list(pictures.items()), legends)


def legend_html(scheme: ClassScheme) -> str:
    """Inline HTML legend: a colour chip and the name of each class."""
    return swatches_html((c.name, c.color) for c in scheme.classes)


def swatches_html(classes) -> str:
    """Inline HTML legend of ``(name, "#rrggbb")`` pairs (names and colours escaped: users name their own classes)."""
    chips = "".join(
        f'<span style="display:inline-block;margin:2px 10px 2px 0"><span style="display:inline-block;width:12px;height:12px;'
        f'background:{html.escape(str(color))};border:1px solid #555;margin-right:4px;vertical-align:middle"></span>'
        f'{html.escape(str(name))}</span>'
        for name, color in classes
    )
    return f'<div style="font-size:0.85em">{chips}</div>'


def fmt_num(v, digits: int = 3) -> str:
    """A number for a table or a sentence: ``digits`` decimals for fractions, thousands separators for counts, "–" for none."""
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _words(items) -> str:
    items = [str(i) for i in items]
    return ", ".join(items) if items else "none"


def card_facts(card) -> list[str]:
    """The card of a model bundle as sentences (markdown), nothing as a Python repr or ``None``."""
    out = []
    enc = "" if card.encoder in (None, "", "none") else f" with a **{card.encoder}** encoder"
    created = f" · created {card.created[:10]}" if card.created else ""
    out.append(f"**{card.arch}**{enc} · tile {card.tile} px · GSD {card.gsd_m:g} m{created}")
    out.append("Bands (in model order): " + ", ".join(f"`{b}`" for b in card.bands))
    opt = list(card.optional_bands or [])
    if opt:
        agree = card.band_agreement or {}
        parts = [f"`{b}` (agreement without it {agree[b]:.1%})" if isinstance(agree.get(b), (int, float)) else f"`{b}` (no agreement measured)"
                 for b in opt]
        combos = [f"`{k}` {v:.1%}" for k, v in agree.items() if "+" in k and isinstance(v, (int, float))]
        out.append("Optional bands (the model runs without them): " + ", ".join(parts)
                   + (f"; without several at once: {', '.join(combos)}" if combos else "")
                   + ". Agreement: share of held-out pixels labelled as with all bands.")
    else:
        out.append("Optional bands: none (every band above is required).")
    levels = list(card.levels or [])
    out.append(f"Processing levels seen in training: {_words(levels)}" if levels else "Processing levels seen in training: not recorded")
    t = card.training or {}
    if t:
        sentence = []
        if t.get("source"):
            sentence.append(f"Source: {t['source']}.")
        if t.get("data"):
            data = list(t["data"])
            sentence.append(f"Trained on {len(data)} scene(s): {_words(data)}" + (f", with {t['labels']} labels" if t.get("labels") else "") + ".")
        chips = t.get("chips")
        if isinstance(chips, dict) and chips:
            size = f" of {t['chip_size']} px" if t.get("chip_size") else ""
            sentence.append("Chips" + size + ": " + ", ".join(f"{fmt_num(v)} {k}" for k, v in chips.items()) + ".")
        if t.get("epochs_run") is not None:
            sentence.append(f"Epochs run: {fmt_num(t['epochs_run'])}.")
        if isinstance(t.get("best_val_miou"), (int, float)):
            sentence.append(f"Best validation mIoU: {t['best_val_miou']:.3f}.")
        if t.get("weights"):
            sentence.append(f"Weights: {t['weights']}.")
        if sentence:
            out.append(" ".join(sentence))
    return out


def card_tables(card) -> dict[str, list[dict]]:
    """Tables of a card's measured figures (3 decimals, "–" where not measured): held-out scenes and levels."""
    tables = {}
    rows = []
    for r in (card.metrics or {}).get("held_out", []):
        m = r.get("metrics", {})
        b = r.get("baseline", {}).get("metrics", {})
        rows.append({"scene": str(r.get("scene", "–")), "reference": str(r.get("labels", "–")), "evaluated on": str(r.get("windows", "–")),
                     "mIoU": fmt_num(m.get("miou")), "OA": fmt_num(m.get("overall_accuracy")),
                     "baseline (labels) mIoU": fmt_num(b.get("miou")), "baseline OA": fmt_num(b.get("overall_accuracy"))})
    if rows:
        tables["Held-out scenes"] = rows
    levels = [{"level": k, "mIoU": fmt_num(v.get("miou")), "OA": fmt_num(v.get("oa")), "pixels": fmt_num(v.get("pixels")),
               "scenes": fmt_num(len(v.get("scenes", []))), "reference": str(v.get("reference", "–"))}
              for k, v in (getattr(card, "level_agreement", None) or {}).items() if isinstance(v, dict)]
    if levels:
        tables["Agreement by processing level"] = levels
    return tables


def agreement_legend_html() -> str:
    """Legend of the agreement map's two colours."""
    chip = '<span style="display:inline-block;width:12px;height:12px;background:rgb{};border:1px solid #555;margin:0 4px 0 10px;vertical-align:middle"></span>'
    a, d = AGREEMENT_COLOURBLIND
    return f'<div style="font-size:0.85em">{chip.format(a)}same class{chip.format(d)}different class (no colour: no label)</div>'


def confidence_legend_html() -> str:
    """A numeric scale for the confidence panel (viridis-like, 0 to 1)."""
    return ('<div style="font-size:0.85em">0 <span style="display:inline-block;width:160px;height:10px;vertical-align:middle;'
            'background:linear-gradient(to right,#440154,#3b528b,#21918c,#5ec962,#fde725)"></span> 1 '
            '(softmax probability of the predicted class)</div>')
