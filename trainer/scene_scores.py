"""Scores of a bundle on sample scenes: the held-out blocks of training scenes, or whole scenes.

Used by ``fit`` (to write the card's metrics) and by ``evaluate`` (:func:`evaluate`, to reproduce
them), so both go through exactly the same code: read the window's bands by name, tiled inference,
harmonise with the reference scheme, accumulate one confusion matrix. (The metrics themselves are
:mod:`core.evaluation`'s.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import numpy as np
from rasterio.windows import Window

from core.evaluation.comparison import Comparison
from core.inference.policy import model_decision, plan_run
from core.inference.streaming import NODATA_CLASS, predict_raster
from core.sources.samples import SampleScene, check_label_grid, get_scene, load_labels, load_model_input, scene_decision
from core.splits import SplitBlock
from models.bundle import Bundle, load_bundle

__all__ = ["scene_windows", "evaluate_scene", "evaluate", "summarize", "evaluate_arrays"]


def scene_windows(bundle: Bundle, scene: SampleScene, split: str = "auto") -> tuple[list[Window], str]:
    """The windows of ``scene`` to evaluate on.

    Args:
        bundle: The model; its card lists the split blocks of the scenes it was trained on.
        scene: The scene.
        split: ``"auto"`` (the ``test`` blocks if the scene was used in training, else the whole
            scene), ``"all"`` (whole scene), or ``"train"``/``"val"``/``"test"``.

    Returns:
        (windows, description of what was chosen).

    Raises:
        ValueError: A split was asked for that the card does not list for this scene.
    """
    blocks = [SplitBlock(**b) for b in bundle.card.training.get("blocks", []) if b["scene"] == scene.id]
    if split == "all" or (split == "auto" and not blocks):
        return [Window(0, 0, scene.width, scene.height)], "whole scene"
    want = "test" if split == "auto" else split
    chosen = [Window(b.col_off, b.row_off, b.width, b.height) for b in blocks if b.split == want]
    if not chosen:
        raise ValueError(
            f"the model card lists no {want!r} blocks for scene {scene.id}; use --split all to "
            "evaluate on the whole scene"
        )
    return chosen, f"{len(chosen)} {want} block(s) of the training split"


def evaluate_scene(
    bundle: Bundle,
    scene: str | SampleScene,
    labels: str = "dw",
    *,
    split: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    baseline: str | None = "dw",
    offset: int | str | None = None,
) -> dict[str, object]:
    """Metrics of a bundle on one scene against one label product.

    Args:
        bundle: The model.
        scene: Scene id or scene.
        labels: Reference label product (``"dw"``, ``"osm"``, ``"dfc"``, ``"water"``).
        split: See :func:`scene_windows`.
        tile: Inference tile side (default: the run policy's, :func:`core.inference.policy.plan_run`).
        overlap: Tile overlap in pixels (default: the run policy's).
        baseline: Another label product scored against ``labels`` on exactly the same pixels
            (e.g. Dynamic World vs OSM), so the model's agreement can be read beside it; ignored
            when equal to ``labels`` or absent from the scene.
        offset: Radiometric offset of the scene's DN (``None``/``"auto"``: decided by
            :func:`core.sources.samples.scene_decision`).

    Returns:
        ``{"scene", "labels", "windows", "metrics", "crosswalk", "input", "input_warnings", "baseline"?}``:
        ``input`` is the input decision in words; ``metrics`` is
        :meth:`core.evaluation.metrics.SegmentationMetrics.to_dict`; ``baseline`` the same for the other
        label product as if it were the prediction.

    Raises:
        BandError, InputError: The scene cannot be read as the model's input (missing bands,
            level refused by the card).
        SceneNotFoundError: Unknown scene or label product.
    """
    sc = get_scene(scene) if isinstance(scene, str) else scene
    decision = model_decision(bundle.card, scene_decision(sc, bundle.card, offset=offset))
    windows, what = scene_windows(bundle, sc, split)
    for product in {labels, baseline} & set(sc.labels) | {labels}:  # before any inference
        check_label_grid(sc, product)
    ref_scheme = sc.label_scheme(labels).name
    cmp_model = Comparison(bundle.card.scheme_name, ref_scheme)
    use_base = baseline is not None and baseline != labels and baseline in sc.labels
    cmp_base = Comparison(sc.label_scheme(baseline).name, ref_scheme) if use_base else None
    for win in windows:
        img = load_model_input(sc, decision, win)
        policy = plan_run(bundle.card, img.height, img.width, decision=decision, tile=tile, overlap=overlap, precision=bundle.precision)
        pred = predict_raster(img, bundle, policy, bands=bundle.bands, num_classes=bundle.num_classes, class_ids=bundle.class_ids)
        ref, _ = load_labels(sc, labels, win)
        p = pred.classes.data[0]
        r = ref.data[0]
        if cmp_base is not None:
            base, base_scheme = load_labels(sc, baseline, win)
            b = base.data[0].copy()
            # the same pixels for both: drop where either the model or the baseline has nothing
            no_base = b == (base_scheme.ignore_index if base_scheme.ignore_index is not None else NODATA_CLASS)
            p = np.where(no_base, NODATA_CLASS, p).astype(np.uint8)
            b[p == NODATA_CLASS] = base_scheme.ignore_index if base_scheme.ignore_index is not None else NODATA_CLASS
            cmp_base.add(b, r)
        cmp_model.add(p, r)
    out: dict[str, object] = {
        "scene": sc.id,
        "labels": labels,
        "windows": what,
        "metrics": cmp_model.metrics().to_dict(),
        "crosswalk": f"{cmp_model.crosswalk.source} -> {cmp_model.crosswalk.target}" if cmp_model.crosswalk else None,
        "input": decision.summary(),
        "input_warnings": list(decision.warnings),
    }
    if cmp_base is not None:
        out["baseline"] = {"labels": baseline, "metrics": cmp_base.metrics().to_dict()}
    return out


def summarize(results: Sequence[dict[str, object]]) -> str:
    """Human-readable lines for a list of :func:`evaluate_scene` results."""
    lines = []
    for r in results:
        m = r["metrics"]
        line = f"{r['scene']} vs {r['labels']} ({r['windows']}): mIoU {m['miou']:.4f} OA {m['overall_accuracy']:.4f}"
        if "baseline" in r:
            b = r["baseline"]["metrics"]
            line += f" | {r['baseline']['labels']} vs {r['labels']}: mIoU {b['miou']:.4f} OA {b['overall_accuracy']:.4f}"
        lines.append(line)
    return "\n".join(lines)


def evaluate_arrays(bundle: Bundle, scenes: Sequence, labels: str, scheme_name: str) -> dict[str, object]:
    """Metrics of a bundle on in-memory chips (exported chips of the test split).

    Args:
        bundle: The model.
        scenes: ``trainer.data.SceneData`` items: ``image`` float32 (C, H, W) in the bundle's band
            order with NaN nodata, ``target`` uint8 class indices (255 = none).
        labels: Label product name, for the report.
        scheme_name: The targets' scheme.

    Returns:
        Same form as :func:`evaluate_scene` with ``scene`` = ``"exported chips"``.
    """
    from affine import Affine

    from core.classes import get_scheme
    from core.io.raster import GeoRaster

    scheme = get_scheme(scheme_name)
    cmp = Comparison(bundle.card.scheme_name, scheme_name)
    for s in scenes:
        raster = GeoRaster(s.image, None, Affine.identity(), float("nan"), tuple(bundle.bands))
        policy = plan_run(bundle.card, raster.height, raster.width, precision=bundle.precision)
        pred = predict_raster(raster, bundle, policy, bands=bundle.bands, num_classes=bundle.num_classes, class_ids=bundle.class_ids)
        cmp.add(pred.classes.data[0], scheme.from_index(s.target))
    return {"scene": "exported chips", "labels": labels, "windows": f"{len(scenes)} test chip(s)",
            "metrics": cmp.metrics().to_dict(), "crosswalk": None}


def evaluate(checkpoint: str, scene: str, labels: str, *, split: str = "auto", as_json: bool = False, precision: str = "fp32",
             offset: str | int | None = "auto") -> dict:
    """Print per-class IoU, mIoU and OA of a bundle on a scene (a table, or one JSON object).

    Args:
        checkpoint: Bundle folder.
        scene: Sample scene id or folder.
        labels: Reference label product.
        split: See :func:`scene_windows`.
        as_json: Print one JSON object instead of tables.
        precision: ``fp32``, ``bf16`` or ``auto``.
        offset: Radiometric offset of the scene: ``"auto"``, 0 or 1000 (see :mod:`core.inputs.decision`).

    Returns:
        The result dict of :func:`evaluate_scene`.
    """
    bundle = load_bundle(checkpoint, precision=precision)
    res = evaluate_scene(bundle, scene, labels, split=split, offset=offset)
    if as_json:
        print(json.dumps(res))
        return res
    from core.evaluation.metrics import metrics_from_confusion

    m = res["metrics"]
    names = list(m["per_class"])
    print(f"{res['scene']}: {bundle.card.name} vs {labels} labels on {res['windows']}"
          + (f" (crosswalk {res['crosswalk']})" if res["crosswalk"] else ""))
    print(f"input: {res['input']}")
    for w in res.get("input_warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print(metrics_from_confusion(m["confusion_matrix"], names, excluded_fraction=m["excluded_fraction"] or 0).table())
    if "baseline" in res:
        b = res["baseline"]["metrics"]
        print(f"\n{res['baseline']['labels']} labels vs {labels} on the same pixels:")
        print(metrics_from_confusion(b["confusion_matrix"], list(b["per_class"])).table())
    return res
