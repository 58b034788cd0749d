"""``python -m trainer report``'s work: a self-contained HTML report of a sample scene's analysis.

Maps, agreement with the reference labels, good-practice area estimates (:mod:`trainer.map_analysis`),
calibration (:mod:`trainer.calibration`), change and provenance, assembled by :mod:`core.products.report`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.classes import scheme_of
from core.errors import GridMismatchError
from core.evaluation.accuracy import design_sample, estimate_from_points, label_points, read_points, sample_points
from core.inference.policy import model_decision, plan_run
from core.io.outputs import atomic_write_text, check_outputs
from core.products.change import change_between
from trainer.calibration import scene_calibration
from trainer.map_analysis import mapped_km2

__all__ = ["report"]


def report(checkpoint: str, scene: str, out: str, *, labels: str = "dw", before_scene: str | None = None, points: str | None = None,
           reference_column: str = "reference_class", seed: int = 0, min_per_class: int = 30) -> Path:
    """Predict a sample scene and write a self-contained HTML report of the analysis.

    Contents (:func:`core.products.report.analysis_report`): true-colour image, prediction, reference and
    confidence maps with legends; agreement with the reference labels; good-practice area
    estimates with 95 % intervals from labelled points (``points``) or, for demonstration, from a
    stratified sample labelled with the reference raster (marked as such); calibration (ECE
    before/after and a reliability diagram); change from ``before_scene`` (same grid) when given;
    provenance (scene, level and offsets, bundle and its SHA-256, software version).

    Raises:
        SceneNotFoundError, BundleError, GridMismatchError, ValueError: With messages for the user.
    """
    from core.evaluation.comparison import compare
    from core.inference.streaming import predict_raster
    from core.inputs.decision import prepare_raster
    from core.products.render import class_rgba
    from core.products.report import analysis_report, bundle_hash, render_html
    from core.sources.samples import get_scene, load_image, load_labels, scene_decision
    from models.bundle import load_bundle
    from trainer.progress import tqdm_progress

    if not out.lower().endswith((".html", ".htm")):
        raise ValueError(f"{out}: the report is an HTML file; give a name ending in .html")
    check_outputs({"--out": out}, inputs=[p for p in (points,) if p])
    bundle = load_bundle(checkpoint)
    sch = scheme_of(bundle.card)
    sc = get_scene(scene)

    def run(scene_obj, desc):
        image = load_image(scene_obj, list(scene_obj.bands))  # shown as true colour; the model sees model_input
        decision = model_decision(bundle.card, scene_decision(scene_obj, bundle.card))
        model_input = prepare_raster(image, decision)
        policy = plan_run(bundle.card, image.height, image.width, decision=decision, precision=bundle.precision)
        with tqdm(total=None, unit="tile", desc=desc) as bar:
            pred = predict_raster(model_input, bundle, policy, bands=bundle.bands, num_classes=bundle.num_classes,
                                  class_ids=bundle.class_ids, progress=tqdm_progress(bar))
        return image, pred, policy

    image, pred, policy = run(sc, f"predict {sc.id}")
    ref, ref_scheme = load_labels(sc, labels)
    cmp = compare(pred, sch.name, ref, ref_scheme.name)
    if points:
        pts = read_points(points, reference_column)
        source = f"labelled points from {Path(points).name} ({len(pts)} points)"
    else:
        design = design_sample(cmp.prediction, cmp.scheme.names, 0.8, 0.01, min_per_class)
        pts = label_points(sample_points(cmp.prediction, cmp.scheme.names, design.per_class, pred.classes.transform, pred.classes.crs, seed),
                           cmp.reference)
        source = (f"DEMONSTRATION: a stratified random sample ({len(pts)} points, seed {seed}) labelled from the {labels} reference raster, "
                  "not by interpretation; label the exported points yourself for publishable numbers")
    est = estimate_from_points(pts, cmp.scheme.names, mapped_km2(cmp.prediction, pred.classes, cmp.scheme.num_classes), "map_class",
                               reference_column)
    cal = scene_calibration(bundle, sc.id, labels, split="all") if sch.name == ref_scheme.name else None
    ch = ch_rgba = None
    if before_scene:
        sb = get_scene(before_scene)
        _, pred0, _ = run(sb, f"predict {sb.id}")
        if not pred0.classes.same_grid(pred.classes):
            raise GridMismatchError(f"{before_scene} and {scene} are not on the same grid; pick two dates of one scene grid")
        ch = change_between(pred0.classes, pred.classes, sch.ids, sch.names, sch.colors, (sb.id, sc.id))
        ch_rgba = class_rgba(np.where(ch.changed, pred.classes.data[0], 255).astype(np.uint8), sch)
    provenance = [("Source scene", f"{sc.id}, Sentinel-2 {sc.date} (sample pack, {sc.path})"), ("Before scene", before_scene or "–"),
                  ("Processing level / offsets", _scene_level(sc)), ("Model bundle", str(Path(checkpoint).resolve())),
                  ("Bundle SHA-256 (card.json + model.safetensors)", bundle_hash(checkpoint)), ("Bands", ", ".join(bundle.bands)),
                  ("Temperature", f"{float(getattr(bundle.card, 'temperature', 1.0)):.3f}"),
                  ("Inference", policy.summary()),
                  ("Input", policy.decision.summary()),
                  ("Reference labels", f"{labels} ({ref_scheme.title})"
                   + (f", crosswalk {cmp.crosswalk.source} → {cmp.crosswalk.target}" if cmp.crosswalk else ""))]
    rep = analysis_report(title=f"Land-cover analysis: {sc.id}", image=image, prediction=pred, scheme=sch, comparison=cmp, reference=ref,
                          reference_scheme=ref_scheme, reference_name=labels, estimate=est, estimate_source=source, calibration=cal,
                          change=ch, change_rgba=ch_rgba, provenance=provenance)
    rep.summary.insert(0, ("Model", f"{bundle.card.name} ({bundle.card.arch}/{bundle.card.encoder})"))
    rep.summary.insert(0, ("Scene", sc.id))
    atomic_write_text(out, render_html(rep))
    print(f"wrote {out}")
    return Path(out)


def _scene_level(sc) -> str:
    """Processing level, baseline and radiometric offset of a sample scene as written in its scene.json."""
    lvl = sc.info.get("processing_level") if isinstance(sc.info, dict) else None
    if not isinstance(lvl, dict):
        return sc.level
    keys = ("s2", "processing_baseline", "radiometric_offset", "product_id")
    return "; ".join(f"{k} {lvl[k]}" for k in keys if k in lvl) or sc.level
