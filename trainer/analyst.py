"""Analyst commands: good-practice assessment, change, polygons, calibration and the HTML report.

``python -m trainer assess | change | polygons | report`` call these functions; the numbers come
from :mod:`core.evaluation.accuracy`, :mod:`core.products.change`, :mod:`core.products.polygons`, :mod:`core.evaluation.calibration` and
:mod:`core.products.report`. Class maps are single-band uint8 GeoTIFFs of class ids (``predict``'s output);
their classes are those of a model card (``--checkpoint``) or a named scheme (``--scheme``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.classes import ClassScheme, get_scheme
from core.errors import GridMismatchError
from core.evaluation.accuracy import (
    AreaEstimate,
    design_sample,
    estimate_from_points,
    label_points,
    read_points,
    sample_points,
    write_points,
)
from core.evaluation.calibration import CalibrationReport, calibration_report, flatten_logits
from core.inference.policy import model_decision, plan_run
from core.io.outputs import atomic_write_text, check_outputs
from core.io.raster import GeoRaster, read_raster, write_cog
from core.products.change import ChangeResult, change_between

__all__ = ["scheme_of", "read_class_map", "assess_sample", "assess_points", "change", "polygons", "scene_calibration",
           "print_calibration", "report", "mapped_km2", "assessment_of"]


def scheme_of(checkpoint: str | None, scheme: str | None) -> ClassScheme:
    """The class scheme of a model bundle's card, or a named scheme (default Dynamic World)."""
    if checkpoint:
        from models.bundle import read_card

        return get_scheme(read_card(checkpoint).scheme_name)
    return get_scheme(scheme or "dynamic_world")


def read_class_map(path: str | Path, scheme: ClassScheme) -> GeoRaster:
    """Read a single-band class-id GeoTIFF and check its values belong to ``scheme``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: More than one band, or class ids the scheme does not have.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"no class map at {path}")
    r = read_raster(path)
    if r.count != 1:
        raise ValueError(f"{path} has {r.count} bands; give a single-band class map (the output of `predict`)")
    data = r.data[0]
    present = set(np.unique(data).tolist()) - {255}
    unknown = sorted(present - set(scheme.ids))
    if unknown:
        raise ValueError(f"{path} holds class ids {unknown[:5]} that the {scheme.name} scheme does not have "
                         f"(ids {scheme.ids}); pass the model with --checkpoint or the scheme with --scheme")
    return GeoRaster(data.astype(np.uint8)[None], r.crs, r.transform, 255, ("class",), r.meta)


def _indices(classes: GeoRaster, scheme: ClassScheme) -> np.ndarray:
    return scheme.to_index(classes.data[0].astype(np.uint8))


def mapped_km2(index_map: np.ndarray, grid: GeoRaster, k: int) -> np.ndarray:
    """Pixel-counted area (km^2) of each class index 0..K-1 of an (H, W) index map on ``grid``."""
    row = grid.pixel_area_m2()[:, None] / 1e6
    valid = (index_map >= 0) & (index_map < k)
    return np.bincount(index_map[valid].astype(np.int64), weights=np.broadcast_to(row, index_map.shape)[valid], minlength=k)[:k]


def assess_sample(map_path: str, out: str, *, checkpoint: str | None = None, scheme: str | None = None, users_accuracy: float = 0.8,
                  target_se: float = 0.01, min_per_class: int = 50, seed: int = 0, label_from: str | None = None) -> pd.DataFrame:
    """Design a stratified random sample of a class map and write its points for labelling.

    Args:
        map_path: Class-map GeoTIFF.
        out: Points file, ``.gpkg`` or ``.csv`` (a CSV twin is written beside a GeoPackage).
        checkpoint: Model bundle whose card gives the classes.
        scheme: Class scheme name when no checkpoint is given (default dynamic_world).
        users_accuracy: Anticipated user's accuracy of every class.
        target_se: Target standard error of overall accuracy.
        min_per_class: Minimum points per mapped class.
        seed: Random seed.
        label_from: Optional reference class-map GeoTIFF on the same grid to label the points
            with (a demonstration: the column ``reference_source`` says ``raster``).

    Returns:
        The points written.
    """
    sch = scheme_of(checkpoint, scheme)
    outs = {"points output": out}
    if out.lower().endswith(".gpkg"):
        outs["points CSV"] = str(Path(out).with_suffix(".csv"))
    check_outputs(outs, inputs=[map_path] + ([label_from] if label_from else []))
    cmap = read_class_map(map_path, sch)
    idx = _indices(cmap, sch)
    design = design_sample(idx, sch.names, users_accuracy, target_se, min_per_class)
    print(design.table().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"sample size from the target SE of overall accuracy (Olofsson et al. 2014 eq. 13): {design.n_total}; "
          f"drawn: {int(design.per_class.sum())}")
    pts = sample_points(idx, sch.names, design.per_class, cmap.transform, cmap.crs, seed=seed)
    if label_from:
        ref = read_class_map(label_from, sch)
        cmap.require_same_grid(ref, "class map and reference map")
        pts = label_points(pts, _indices(ref, sch))
        print("points labelled from a reference raster: a demonstration, not an independent reference sample")
    write_points(pts, out)
    if "points CSV" in outs:
        write_points(pts, outs["points CSV"])
    print(f"wrote {len(pts)} points to {out}" + (f" and {outs['points CSV']}" if "points CSV" in outs else ""))
    return pts


def assessment_of(index_map: np.ndarray, grid: GeoRaster, points: pd.DataFrame, sch: ClassScheme,
                  reference_column: str = "reference_class", map_column: str = "map_class") -> AreaEstimate:
    """Area and accuracy estimates of a class-index map from its labelled points (areas in km^2)."""
    return estimate_from_points(points, sch.names, mapped_km2(index_map, grid, sch.num_classes), map_column, reference_column)


def assess_points(map_path: str, points_path: str, *, checkpoint: str | None = None, scheme: str | None = None,
                  reference_column: str = "reference_class", out: str | None = None, as_json: bool = False) -> AreaEstimate:
    """Estimate accuracy and class areas with 95 % intervals from labelled points of a class map.

    Args:
        map_path: The class map the points were drawn from (its pixel counts are the strata sizes).
        points_path: Labelled points (CSV or GeoPackage) with ``map_class`` and a reference column.
        checkpoint: Model bundle whose card gives the classes.
        scheme: Class scheme name when no checkpoint is given (default dynamic_world).
        reference_column: Column of the reference class (index or name).
        out: Optional CSV of the per-class table.
        as_json: Print one JSON object instead of tables.
    """
    sch = scheme_of(checkpoint, scheme)
    if out:
        check_outputs({"--out": out}, inputs=[map_path, points_path])
    cmap = read_class_map(map_path, sch)
    pts = read_points(points_path, reference_column)
    est = assessment_of(_indices(cmap, sch), cmap, pts, sch, reference_column)
    table = est.table()
    if out:
        atomic_write_text(out, table.to_csv(index=False))
    if as_json:
        print(json.dumps(est.to_dict()))
        return est
    print(f"{len(pts)} labelled points; areas in km2; 95 % confidence intervals (Olofsson et al. 2014)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"overall accuracy {est.overall:.4f} +- {est.overall_ci:.4f}")
    print("\nerror matrix of estimated area proportions (rows = map, columns = reference):")
    print(est.matrix_table().to_string(float_format=lambda v: f"{v:.4f}"))
    return est


def change(before: str, after: str, *, checkpoint: str | None = None, scheme: str | None = None, out_map: str | None = None,
           out_csv: str | None = None, labels: tuple[str, str] | None = None) -> ChangeResult:
    """From-to change between two class maps on the same grid; optional change-map COG and transitions CSV.

    Raises:
        GridMismatchError: The maps are not on one grid.
    """
    sch = scheme_of(checkpoint, scheme)
    outs = {k: v for k, v in {"--out-map": out_map, "--out-csv": out_csv}.items() if v}
    if outs:
        check_outputs(outs, inputs=[before, after])
    a, b = read_class_map(before, sch), read_class_map(after, sch)
    if labels is None:
        pb, pa = Path(before), Path(after)
        labels = (pb.stem, pa.stem) if pb.stem != pa.stem else (f"{pb.parent.name}/{pb.stem}", f"{pa.parent.name}/{pa.stem}")
    res = change_between(a, b, sch.ids, sch.names, sch.colors, labels)
    if out_map:
        write_cog(res.change_map, out_map)
    if out_csv:
        atomic_write_text(out_csv, res.transitions().to_csv(index=False))
    print(f"compared {res.total_km2:.3f} km2; changed {res.changed_km2:.3f} km2 ({100 * res.changed_km2 / max(res.total_km2, 1e-12):.1f} %)")
    print(res.net_change().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return res


def polygons(map_path: str, out: str, *, mmu_ha: float = 0.5, checkpoint: str | None = None, scheme: str | None = None) -> int:
    """Write a class map as GeoPackage polygons after removing patches below ``mmu_ha`` hectares; returns the count."""
    from core.products.polygons import class_polygons, write_polygons

    sch = scheme_of(checkpoint, scheme)
    check_outputs({"--out": out}, inputs=[map_path])
    cmap = read_class_map(map_path, sch)
    layer = class_polygons(cmap, sch.ids, sch.names, mmu_ha)
    write_polygons(layer, out)
    print(layer.summary().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {len(layer)} polygons (minimum mapping unit {mmu_ha} ha) to {out}")
    return len(layer)


def scene_calibration(bundle, scene: str, labels: str = "dw", split: str = "auto", max_pixels: int = 200_000) -> CalibrationReport:
    """ECE before (T = 1) and after the card's temperature on a sample scene's reference labels.

    The bundle's probabilities carry its card temperature ``T``; ``T * log p`` recovers the logits
    up to a per-pixel constant, which softmax ignores, so both are measured from one forward pass.
    Pixels whose reference class has no counterpart in the model's scheme are left out.

    Raises:
        ValueError: The split is not in the card (see :func:`trainer.evaluation.scene_windows`).
    """
    from core.classes import harmonize
    from core.inference.streaming import predict_raster
    from core.sources.samples import get_scene, load_labels, load_model_input, scene_decision
    from trainer.evaluation import scene_windows

    sc = get_scene(scene)
    decision = model_decision(bundle.card, scene_decision(sc, bundle.card))
    windows, _ = scene_windows(bundle, sc, split)
    model_scheme = get_scheme(bundle.card.scheme_name)
    xs, ys = [], []
    t = float(getattr(bundle.card, "temperature", 1.0) or 1.0)
    for win in windows:
        image = load_model_input(sc, decision, win)
        ref, ref_scheme = load_labels(sc, labels, win)
        policy = plan_run(bundle.card, image.height, image.width, decision=decision, precision=bundle.precision)
        probs = predict_raster(image, bundle, policy, bands=bundle.bands, num_classes=bundle.num_classes,
                               class_ids=bundle.class_ids, probabilities=True).probabilities
        no_data = np.isnan(probs).any(axis=0)
        probs = np.nan_to_num(probs, nan=1.0 / bundle.num_classes)  # no-data pixels: their reference is dropped below
        pred_ids = model_scheme.from_index(probs.argmax(0).astype(np.uint8))
        _, r, _, _ = harmonize(pred_ids, model_scheme.name, ref.data[0], ref_scheme.name)
        if get_scheme(bundle.card.scheme_name).name != ref_scheme.name:
            from core.classes import common_scheme

            common, _ = common_scheme(model_scheme.name, ref_scheme.name)
            if common.name != model_scheme.name:
                raise ValueError(f"calibration needs reference labels in the model's classes ({model_scheme.name}); "
                                 f"{labels} maps to {common.name}")
        ridx = model_scheme.to_index(r.astype(np.uint8))
        ridx = np.where(no_data, 255, ridx)
        logits = t * np.log(np.clip(probs, 1e-30, 1.0))
        x, y = flatten_logits(logits, ridx, 255)
        xs.append(x)
        ys.append(y)
    x, y = flatten_logits(np.concatenate(xs)[..., None, None], np.concatenate(ys)[:, None, None], 255, max_pixels=max_pixels)
    return calibration_report(x, y, temperature=t)


def print_calibration(bundle, scene: str, labels: str, split: str = "auto", png: str | None = None) -> CalibrationReport:
    """Print ECE before/after the card temperature on a scene and optionally write the reliability diagram PNG."""
    from core.products.report import reliability_png

    rep = scene_calibration(bundle, scene, labels, split)
    note = "" if rep.temperature != 1.0 else " (the card has no fitted temperature: run fit to calibrate)"
    print(f"\ncalibration on {rep.pixels} labelled pixels: temperature {rep.temperature:.3f}{note}; "
          f"expected calibration error {rep.ece_before:.4f} before, {rep.ece_after:.4f} after (15 bins)")
    if png:
        from core.io.outputs import atomic_write_bytes

        atomic_write_bytes(png, reliability_png({"T = 1 (raw softmax)": rep.bins_before, f"T = {rep.temperature:.2f}": rep.bins_after}))
        print(f"wrote the reliability diagram to {png}")
    return rep


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
    sch = get_scheme(bundle.card.scheme_name)
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


def validation_calibration(model, loader, max_pixels: int = 500_000, device: str = "cpu") -> CalibrationReport:
    """Fit the softmax temperature on a validation loader of (normalised x, target y, ...) batches.

    Args:
        model: The network (eval mode is set here); returns (B, K, H, W) logits.
        loader: Validation ``DataLoader`` of the trainer's data module (y = 255 where unlabelled).
        max_pixels: Labelled pixels kept (a fixed-seed random subset) for the fit.
        device: Torch device.

    Returns:
        The temperature with ECE before (T = 1) and after on those validation pixels.
    """
    import torch

    model.eval()
    xs, ys = [], []
    with torch.inference_mode():
        for batch in loader:
            logits = model(batch[0].to(device)).float().cpu().numpy()
            x, y = flatten_logits(logits, batch[1].numpy(), 255)
            xs.append(x)
            ys.append(y)
    if not xs:
        return calibration_report(np.zeros((0, 1), np.float32), np.zeros(0, np.int64), temperature=1.0)
    k = xs[0].shape[1]
    x = np.concatenate(xs).reshape(-1, k)
    y = np.concatenate(ys)
    if y.size > max_pixels:
        idx = np.random.default_rng(0).choice(y.size, max_pixels, replace=False)
        x, y = x[idx], y[idx]
    return calibration_report(x, y)
