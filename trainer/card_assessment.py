"""Measure what a model card promises beyond held-out accuracy, and write it into the card.

* ``band_agreement``: on the held-out (test) blocks, the share of pixels whose class stays the same
  when optional bands are missing (filled with the card mean, as :mod:`core.inputs.decision` does at
  prediction time) compared with the all-bands prediction.
* ``level_agreement``: agreement with Dynamic World on the held-out blocks, per processing level.
* Leave-one-region-out (LORO): models trained without a region, scored on every scene of it
  against Dynamic World and, where the region has one, its independent reference, next to the
  Dynamic World model on exactly the same pixels.
* Independent references: the model and the Dynamic World model side by side against every
  independent reference of the pack (OSM Brandenburg, Sen1Floods11 water, Slovenian land use).

The Dynamic World model's labels are the pack's ``labels_dw.tif``, which the local port
(``models/dynamicworld``) reproduces exactly (tests/models/test_dynamicworld.py).

Run: ``python -m trainer card-check models/default --loro runs/loro-*/bundle`` (:mod:`trainer.cli.card_check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from core.classes import get_crosswalk
from core.evaluation.metrics import metrics_from_confusion
from core.inference.policy import model_decision, plan_run
from core.inference.streaming import NODATA_CLASS, predict_raster
from core.sources.samples import get_scene, load_model_input, scene_decision
from models.bundle import Bundle, load_bundle, read_card, write_card
from trainer.scene_scores import evaluate_scene

__all__ = ["DROPS", "REGIONS", "band_agreement", "level_agreement", "loro_row", "independent_table", "assess_card", "card_tables"]

DROPS: tuple[tuple[str, ...], ...] = (("B5",), ("B6",), ("B7",), ("B11",), ("B12",), ("B5", "B12"))
"""Missing-band cases measured (each optional band alone, and the pair B5 + B12)."""

REGIONS: dict[str, str] = {
    "hungary-": "Hungary", "virginia-": "Virginia (US)", "newzealand-": "New Zealand", "slovenia-": "Slovenia",
    "brandenburg-": "Brandenburg (DE)", "sandiego-": "San Diego (US)", "campeche-": "Campeche (MX)",
    "sen1floods11-": "Spain (Sen1Floods11)",
}
"""Scene-id prefix -> region name."""

REFERENCE_NAMES = {"osm": "OSM land use", "water": "Sen1Floods11 hand-labelled water", "lulc": "Slovenian land use",
                   "dfc": "DFC2020"}


def _test_windows(bundle: Bundle) -> dict[str, list[Window]]:
    out: dict[str, list[Window]] = {}
    for b in bundle.card.training.get("blocks", []):
        if b["split"] == "test":
            out.setdefault(b["scene"], []).append(Window(b["col_off"], b["row_off"], b["width"], b["height"]))
    return out


def _classes(bundle: Bundle, img) -> np.ndarray:
    # test blocks are at most data.block_size px: one tile of that size each, no padding to 256
    side = max(32, -(-max(img.height, img.width) // 32) * 32)
    tile = min(bundle.card.tile, side)
    policy = plan_run(bundle.card, img.height, img.width, tile=tile, overlap=None if tile >= 64 else 0, precision=bundle.precision)
    pred = predict_raster(img, bundle, policy, bands=bundle.bands, num_classes=bundle.num_classes, class_ids=bundle.class_ids)
    return pred.classes.data[0]


def band_agreement(bundle: Bundle, drops: Sequence[Sequence[str]] = DROPS, scenes: Sequence[str] | None = None,
                   max_blocks: int | None = None) -> dict[str, dict[str, list[int]]]:
    """Agreement of predictions without some bands with the all-bands prediction, on test blocks.

    A missing band is filled with the card's mean (raw units), i.e. 0 after standardisation, as
    :mod:`core.inputs.decision` fills a missing optional band at prediction time.

    Args:
        bundle: The model (its card lists the test blocks).
        drops: Band sets to leave out.
        scenes: Restrict to these scene ids (default every scene with test blocks).
        max_blocks: At most this many test blocks per scene, the first in row-major order
            (``None``: all).

    Returns:
        ``{"B5+B12": {scene_id: [pixels that agree, valid pixels]}}``.
    """
    mean = dict(zip(bundle.card.bands, bundle.card.mean, strict=True))
    out: dict[str, dict[str, list[int]]] = {"+".join(d): {} for d in drops}
    for sid, wins in _test_windows(bundle).items():
        if scenes is not None and sid not in scenes:
            continue
        sc = get_scene(sid)
        decision = model_decision(bundle.card, scene_decision(sc, bundle.card))
        for win in wins[:max_blocks]:
            img = load_model_input(sc, decision, win)
            full = _classes(bundle, img)
            for d in drops:
                data = img.data.copy()
                valid = ~np.isnan(data).any(axis=0)
                for b in d:
                    k = bundle.bands.index(b)
                    data[k][valid] = mean[b]
                img_d = type(img)(data, img.crs, img.transform, img.nodata, img.band_names, dict(img.meta))
                got = _classes(bundle, img_d)
                ok = (full != NODATA_CLASS) & (got != NODATA_CLASS)
                cnt = out["+".join(d)].setdefault(sid, [0, 0])
                cnt[0] += int((full[ok] == got[ok]).sum())
                cnt[1] += int(ok.sum())
    return out


def _sum_cm(results: Sequence[dict], key: str = "metrics") -> np.ndarray | None:
    cms = [np.array(r[key]["confusion_matrix"]) if key == "metrics" else np.array(r["baseline"]["metrics"]["confusion_matrix"]) for r in results]
    return sum(cms) if cms else None


def level_agreement(held_out: Sequence[dict], levels: dict[str, str], class_names: list[str]) -> dict[str, dict]:
    """Agreement (mIoU, OA) with Dynamic World on the held-out blocks, per processing level.

    Args:
        held_out: The card's ``metrics.held_out`` results.
        levels: Scene id -> level.
        class_names: The model's class names.

    Returns:
        ``{"L1C": {"miou", "oa", "pixels", "scenes", "reference": "dw"}}``.
    """
    out: dict[str, dict] = {}
    for lv in sorted(set(levels.values())):
        rs = [r for r in held_out if r["labels"] == "dw" and levels.get(r["scene"]) == lv]
        if not rs:
            continue
        m = metrics_from_confusion(_sum_cm(rs), class_names)
        out[lv] = {"miou": round(m.miou, 4), "oa": round(m.overall_accuracy, 4), "pixels": int(m.pixels),
                   "scenes": sorted(r["scene"] for r in rs), "reference": "dw (Dynamic World model)"}
    return out


def loro_row(bundle: Bundle, region_prefix: str) -> dict:
    """Score a model trained without a region on every scene of that region.

    Args:
        bundle: The LORO model.
        region_prefix: Scene-id prefix of the held-out region (``"hungary-"``).

    Returns:
        ``{"region", "scenes", "epochs", "dw": {"miou", "oa", "pixels"}, "independent": {...}?}``.

    Raises:
        ValueError: The model was trained on a scene of the region.
    """
    from core.sources.samples import list_scenes

    trained = bundle.card.training.get("data", [])
    if any(s.startswith(region_prefix) for s in trained):
        raise ValueError(f"{bundle.path} was trained on {region_prefix}* scenes; it cannot score that region")
    scenes = [s for s in list_scenes() if s.id.startswith(region_prefix)]
    rs = [evaluate_scene(bundle, s, "dw", split="all", baseline=None) for s in scenes]
    m = metrics_from_confusion(_sum_cm(rs), bundle.card.class_names)
    row = {"region": REGIONS.get(region_prefix, region_prefix), "scenes": [s.id for s in scenes],
           "epochs": bundle.card.training.get("epochs_run"),
           "dw": {"miou": round(m.miou, 4), "oa": round(m.overall_accuracy, 4), "pixels": int(m.pixels)}}
    ind = {}
    for other in ("osm", "water", "lulc"):
        rs = [evaluate_scene(bundle, s, other, split="all", baseline="dw") for s in scenes if other in s.labels]
        if rs:
            names = list(rs[0]["metrics"]["per_class"])
            mm, bb = metrics_from_confusion(_sum_cm(rs), names), metrics_from_confusion(_sum_cm(rs, "baseline"), names)
            ind[other] = {"model": {"miou": round(mm.miou, 4), "oa": round(mm.overall_accuracy, 4)},
                          "dynamic_world": {"miou": round(bb.miou, 4), "oa": round(bb.overall_accuracy, 4)},
                          "pixels": int(mm.pixels), "crosswalk": rs[0]["crosswalk"]}
    if ind:
        row["independent"] = ind
    return row


def independent_table(held_out: Sequence[dict], loro: Sequence[dict]) -> list[dict]:
    """Model vs the Dynamic World model on every independent reference, same pixels.

    Held-out blocks of the main model where the reference's scene has test blocks; the region's
    LORO model where the main model trained on all of the region (Slovenia: one 1 km2 patch).
    """
    rows = []
    for r in held_out:
        if r["labels"] in REFERENCE_NAMES and "baseline" in r:
            m, b = r["metrics"], r["baseline"]["metrics"]
            rows.append({"reference": REFERENCE_NAMES[r["labels"]], "scene": r["scene"], "pixels": m["pixels"],
                         "where": "held-out test blocks, main model", "crosswalk": r["crosswalk"],
                         "model": {"miou": round(m["miou"], 4), "oa": round(m["overall_accuracy"], 4)},
                         "dynamic_world": {"miou": round(b["miou"], 4), "oa": round(b["overall_accuracy"], 4)}})
    have = {row["reference"] for row in rows}
    for lr in loro:
        for k, v in lr.get("independent", {}).items():
            if REFERENCE_NAMES[k] not in have:
                rows.append({"reference": REFERENCE_NAMES[k], "scene": ", ".join(lr["scenes"]), "pixels": v["pixels"],
                             "where": f"whole region, model trained without {lr['region']} (LORO)",
                             "crosswalk": v["crosswalk"], "model": v["model"], "dynamic_world": v["dynamic_world"]})
    return rows


def _scene_levels(card) -> dict[str, str]:
    """Scene id -> processing level of every pack scene the card was trained on."""
    return {sid: get_scene(sid).level for sid in card.training.get("data", [])}


def _crosswalk_table() -> list[list[str]]:
    return [list(p) for p in get_crosswalk("slovenia_lulc", "dynamic_world").table()]


def assess_card(bundle_dir: str | Path, loro_dirs: Sequence[str | Path] = ()) -> dict:
    """Measure band/level agreement, LORO and the independent-reference table; write them into the card.

    Args:
        bundle_dir: The main model bundle (its card is rewritten; weights untouched).
        loro_dirs: LORO bundles (their configs' ``data.exclude_regions`` name the held-out region).

    Returns:
        The fields written.
    """
    bundle = load_bundle(bundle_dir)
    card = read_card(bundle_dir)
    detail = band_agreement(bundle)
    card.band_agreement = {k: round(sum(a for a, _ in v.values()) / max(1, sum(n for _, n in v.values())), 4)
                           for k, v in detail.items()}
    levels = _scene_levels(card)
    held = card.metrics.get("held_out", [])
    card.level_agreement = level_agreement(held, levels, card.class_names)
    loro = []
    for d in loro_dirs:
        lb = load_bundle(d)
        for prefix in lb.card.training["config"]["data"].get("exclude_regions", []):
            loro.append(loro_row(lb, prefix))
    card.metrics["band_agreement_detail"] = detail
    card.metrics["leave_one_region_out"] = loro
    card.metrics["independent_references"] = independent_table(held, loro)
    card.metrics["crosswalk_slovenia_lulc_to_dynamic_world"] = _crosswalk_table()
    write_card(card, bundle_dir)
    return {"band_agreement": card.band_agreement, "level_agreement": card.level_agreement,
            "leave_one_region_out": loro, "independent_references": card.metrics["independent_references"]}


def card_tables(bundle_dir: str | Path) -> str:
    """The card's assessment as Markdown tables (as the README shows them).

    Tables: agreement without optional bands, agreement with Dynamic World per processing level,
    leave-one-region-out, and the independent references (model vs the Dynamic World model on the
    same pixels).
    """
    card = read_card(bundle_dir)
    m = card.metrics
    detail = m.get("band_agreement_detail", {})
    levels = _scene_levels(card)
    lv_names = [lv for lv in ("L1C", "L2A") if lv in levels.values()]

    def by_level(counts: dict, lv: str) -> str:
        a = sum(c[0] for s, c in counts.items() if levels.get(s) == lv)
        n = sum(c[1] for s, c in counts.items() if levels.get(s) == lv)
        return f"{100 * a / n:.1f} %" if n else "–"

    def worst(counts: dict) -> str:
        s, (a, n) = min(counts.items(), key=lambda kv: kv[1][0] / max(1, kv[1][1]))
        return f"{100 * a / max(1, n):.1f} % ({s})"

    out = ["| missing band(s) | agreement with the all-bands map | " + " | ".join(lv_names) + " | worst scene | held-out pixels |",
           "|---|---:|" + "---:|" * len(lv_names) + "---|---:|"]
    for k, v in (card.band_agreement or {}).items():
        c = detail.get(k, {})
        out.append(f"| {k} | {100 * v:.1f} % | " + " | ".join(by_level(c, lv) for lv in lv_names)
                   + f" | {worst(c) if c else '–'} | {sum(n for _, n in c.values()):,} |")
    out += ["", "| level | scenes | pixels | mIoU vs DW | OA vs DW |", "|---|---|---:|---:|---:|"]
    for lv, r in (card.level_agreement or {}).items():
        out.append(f"| {lv} | {len(r['scenes'])} | {r['pixels']:,} | {r['miou']:.3f} | {r['oa']:.3f} |")
    out += ["", "| region held out | scenes | epochs | pixels | mIoU vs DW | OA vs DW | independent reference: model / DW model OA |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for r in m.get("leave_one_region_out", []):
        ind = "; ".join(f"{REFERENCE_NAMES[k]}: {v['model']['oa']:.3f} / {v['dynamic_world']['oa']:.3f}"
                        for k, v in r.get("independent", {}).items()) or "–"
        out.append(f"| {r['region']} | {len(r['scenes'])} | {r['epochs']} | {r['dw']['pixels']:,} | {r['dw']['miou']:.3f} | "
                   f"{r['dw']['oa']:.3f} | {ind} |")
    out += ["", "| reference | scene | where | pixels | model mIoU | model OA | DW model mIoU | DW model OA |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in m.get("independent_references", []):
        out.append(f"| {r['reference']} | {r['scene']} | {r['where']} | {r['pixels']:,} | {r['model']['miou']:.3f} | "
                   f"{r['model']['oa']:.3f} | {r['dynamic_world']['miou']:.3f} | {r['dynamic_world']['oa']:.3f} |")
    return "\n".join(out)

