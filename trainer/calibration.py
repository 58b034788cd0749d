"""Calibration of a model's probabilities: the temperature fitted by ``fit`` and the ECE of ``evaluate --calibration``.

The numbers come from :mod:`core.evaluation.calibration`; the reliability diagram from
:mod:`core.products.report`.
"""

from __future__ import annotations

import numpy as np

from core.classes import scheme_of
from core.evaluation.calibration import CalibrationReport, calibration_report, flatten_logits
from core.inference.policy import model_decision, plan_run

__all__ = ["scene_calibration", "print_calibration", "validation_calibration"]


def scene_calibration(bundle, scene: str, labels: str = "dw", split: str = "auto", max_pixels: int = 200_000) -> CalibrationReport:
    """ECE before (T = 1) and after the card's temperature on a sample scene's reference labels.

    The bundle's probabilities carry its card temperature ``T``; ``T * log p`` recovers the logits
    up to a per-pixel constant, which softmax ignores, so both are measured from one forward pass.
    Pixels whose reference class has no counterpart in the model's scheme are left out.

    Raises:
        ValueError: The split is not in the card (see :func:`trainer.scene_scores.scene_windows`).
    """
    from core.classes import harmonize
    from core.inference.streaming import predict_raster
    from core.sources.samples import get_scene, load_labels, load_model_input, scene_decision
    from trainer.scene_scores import scene_windows

    sc = get_scene(scene)
    decision = model_decision(bundle.card, scene_decision(sc, bundle.card))
    windows, _ = scene_windows(bundle, sc, split)
    model_scheme = scheme_of(bundle.card)
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
        if scheme_of(bundle.card).name != ref_scheme.name:
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
