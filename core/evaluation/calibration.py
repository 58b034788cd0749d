"""Calibrated confidence: temperature scaling, expected calibration error, reliability diagrams.

A network's softmax probability is usually *over*-confident: among pixels predicted with 0.9
confidence fewer than 90 % are right. Temperature scaling (Guo, Pleiss, Sun, Weinberger 2017, "On
calibration of modern neural networks", ICML, section 4.2) divides the logits by one scalar
``T > 0`` fitted on held-out (validation) pixels by minimising the negative log-likelihood; it
never changes the arg-max class, only how sure the probabilities say the model is.

Expected calibration error (Naeini et al. 2015; Guo et al. 2017 eq. 3): pixels are binned by their
confidence (the top probability) into ``M`` equal-width bins, and
``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|``. It is computed with torchmetrics'
``MulticlassCalibrationError`` (norm ``l1``); the reliability diagram shows acc(B_m) against
conf(B_m) per bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

__all__ = ["confidence_calibration", "fit_temperature", "apply_temperature", "expected_calibration_error", "reliability_bins", "CalibrationReport",
           "calibration_report", "flatten_logits"]


def flatten_logits(logits: np.ndarray, labels: np.ndarray, ignore_index: int = 255, max_pixels: int | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of (B, K, H, W) logits and (B, H, W) labels as (N, K) and (N,), unlabelled left out.

    Args:
        logits: float (B, K, H, W) or (K, H, W) logits.
        labels: Integer (B, H, W) or (H, W) class indices, ``ignore_index`` = unlabelled.
        ignore_index: Unlabelled value.
        max_pixels: Keep at most this many pixels (a random subset with ``seed``).
        seed: Seed of the subset.

    Returns:
        (float32 (N, K) logits, int64 (N,) labels).
    """
    x = np.asarray(logits)
    y = np.asarray(labels)
    if x.ndim == 3:
        x, y = x[None], y[None]
    k = x.shape[1]
    x = np.moveaxis(x, 1, -1).reshape(-1, k)
    y = y.reshape(-1).astype(np.int64)
    keep = (y != ignore_index) & (y >= 0) & (y < k) & np.isfinite(x).all(axis=1)
    x, y = x[keep], y[keep]
    if max_pixels is not None and y.size > max_pixels:
        idx = np.random.default_rng(seed).choice(y.size, max_pixels, replace=False)
        x, y = x[idx], y[idx]
    return x.astype(np.float32), y


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """Fit the softmax temperature that minimises the negative log-likelihood (Guo et al. 2017).

    Optimised over ``log T`` (so ``T`` stays positive) with torch's L-BFGS.

    Args:
        logits: float (N, K) logits of labelled validation pixels.
        labels: int (N,) true class indices 0..K-1.
        max_iter: L-BFGS iterations.

    Returns:
        T > 0 (1.0 when there are no pixels). T > 1 softens over-confident probabilities.

    Raises:
        ValueError: Shapes do not match.
    """
    x = torch.as_tensor(np.asarray(logits, np.float32))
    y = torch.as_tensor(np.asarray(labels, np.int64))
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"logits must be (N, K) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if y.numel() == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def apply_temperature(logits: np.ndarray, temperature: float, axis: int = 1) -> np.ndarray:
    """Softmax of ``logits / T`` along ``axis`` (float32, numerically stable)."""
    z = np.asarray(logits, np.float32) / np.float32(temperature)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE of (N, K) probabilities against (N,) labels, equal-width confidence bins (torchmetrics).

    Args:
        probs: float (N, K) class probabilities (rows sum to 1).
        labels: int (N,) true class indices.
        n_bins: Number of confidence bins M.

    Returns:
        ECE in [0, 1] (0 = calibrated).
    """
    p = torch.as_tensor(np.asarray(probs, np.float32))
    if p.shape[0] == 0:
        return float("nan")
    y = torch.as_tensor(np.asarray(labels, np.int64))
    return float(multiclass_calibration_error(p, y, num_classes=p.shape[1], n_bins=n_bins, norm="l1"))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Accuracy against mean confidence in equal-width confidence bins (the reliability diagram).

    Returns:
        One row per non-empty bin: ``lower, upper, confidence, accuracy, pixels``.
    """
    p = np.asarray(probs, float)
    conf = p.max(axis=1)
    right = p.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            rows.append({"lower": edges[b], "upper": edges[b + 1], "confidence": float(conf[sel].mean()),
                         "accuracy": float(right[sel].mean()), "pixels": int(sel.sum())})
    return pd.DataFrame(rows, columns=["lower", "upper", "confidence", "accuracy", "pixels"])


@dataclass(frozen=True)
class CalibrationReport:
    """Calibration of one model on one set of labelled pixels, before and after temperature scaling.

    Attributes:
        temperature: T applied for "after".
        ece_before: ECE of the raw softmax (T = 1).
        ece_after: ECE of softmax(logits / T).
        bins_before: Reliability bins of the raw softmax.
        bins_after: Reliability bins after scaling.
        pixels: Labelled pixels used.
        n_bins: Number of bins.
    """

    temperature: float
    ece_before: float
    ece_after: float
    bins_before: pd.DataFrame
    bins_after: pd.DataFrame
    pixels: int
    n_bins: int = 15

    def to_dict(self) -> dict:
        """JSON-ready summary (no bins)."""
        return {"temperature": self.temperature, "ece_before": self.ece_before, "ece_after": self.ece_after,
                "pixels": self.pixels, "n_bins": self.n_bins}


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float | None = None, n_bins: int = 15) -> CalibrationReport:
    """ECE and reliability bins before and after temperature scaling.

    Args:
        logits: float (N, K) logits of labelled pixels.
        labels: int (N,) true class indices.
        temperature: T to apply (e.g. the model card's, fitted on the validation split); ``None``
            fits it on these pixels (then "after" is an in-sample figure).
        n_bins: Number of confidence bins.
    """
    t = fit_temperature(logits, labels) if temperature is None else float(temperature)
    p0 = apply_temperature(logits, 1.0)
    p1 = apply_temperature(logits, t)
    return CalibrationReport(t, expected_calibration_error(p0, labels, n_bins), expected_calibration_error(p1, labels, n_bins),
                             reliability_bins(p0, labels, n_bins), reliability_bins(p1, labels, n_bins), int(len(labels)), n_bins)


def confidence_calibration(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> tuple[float, pd.DataFrame]:
    """ECE and reliability bins from a confidence map and where the prediction is right.

    ECE needs only the top-class confidence and whether that class is right, so a class map's
    confidence raster and a reference are enough (Guo et al. 2017 eq. 3).

    Args:
        confidence: float (N,) or (H, W) top-class probabilities.
        correct: bool, same shape: prediction equals the reference.
        n_bins: Number of equal-width bins.

    Returns:
        (ECE, bins with ``lower, upper, confidence, accuracy, pixels``).
    """
    conf = np.asarray(confidence, float).reshape(-1)
    right = np.asarray(correct, bool).reshape(-1)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    ece = 0.0
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            c, a = float(conf[sel].mean()), float(right[sel].mean())
            ece += sel.sum() / max(conf.size, 1) * abs(a - c)
            rows.append({"lower": edges[b], "upper": edges[b + 1], "confidence": c, "accuracy": a, "pixels": int(sel.sum())})
    return (float(ece) if conf.size else float("nan")), pd.DataFrame(rows, columns=["lower", "upper", "confidence", "accuracy", "pixels"])
