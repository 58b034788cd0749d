"""Calibrated confidence (core.evaluation.calibration): temperature scaling of an over-confident model."""

from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.calibration import (
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    flatten_logits,
    reliability_bins,
)


def _overconfident(n: int, k: int = 5, sharpness: float = 4.0, seed: int = 0):
    """Labels drawn from softmax(z); the 'model' reports softmax(sharpness * z): right ranking, too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k)).astype(np.float32)
    p_true = apply_temperature(z, 1.0)
    labels = (rng.random((n, 1)) > p_true.cumsum(1)).sum(1)
    return sharpness * z, labels


def test_calibration_temperature_recovers_overconfidence_and_ece_drops():
    logits, labels = _overconfident(20_000)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(4.0, rel=0.1)  # the true over-sharpening factor
    before = expected_calibration_error(apply_temperature(logits, 1.0), labels)
    after = expected_calibration_error(apply_temperature(logits, t), labels)
    assert before > 0.1 and after < 0.02 and after < before / 5
    # the arg-max class never changes
    assert (apply_temperature(logits, t).argmax(1) == logits.argmax(1)).all()
    # held-out pixels from the same model: the fitted T generalises
    test_logits, test_labels = _overconfident(20_000, seed=1)
    rep = calibration_report(test_logits, test_labels, temperature=t)
    assert rep.ece_after < rep.ece_before / 5 and rep.pixels == 20_000
    # reliability bins: over-confident before (accuracy below confidence), close to the diagonal after
    high = rep.bins_before[rep.bins_before["confidence"] > 0.8]
    assert (high["accuracy"] < high["confidence"] - 0.05).all()
    gap = (rep.bins_after["accuracy"] - rep.bins_after["confidence"]).abs()
    assert np.average(gap, weights=rep.bins_after["pixels"]) < 0.03


def test_calibration_ece_matches_the_binned_definition():
    logits, labels = _overconfident(3000, seed=2)
    p = apply_temperature(logits, 1.0)
    bins = reliability_bins(p, labels, n_bins=15)
    manual = float((bins["pixels"] * (bins["accuracy"] - bins["confidence"]).abs()).sum() / bins["pixels"].sum())
    assert expected_calibration_error(p, labels, n_bins=15) == pytest.approx(manual, abs=1e-5)


def test_calibration_flatten_logits_leaves_out_unlabelled_pixels():
    logits = np.zeros((2, 3, 4, 4), np.float32)
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, 0, :] = 255
    x, y = flatten_logits(logits, labels)
    assert x.shape == (28, 3) and y.shape == (28,)
    x, y = flatten_logits(logits, labels, max_pixels=10)
    assert x.shape == (10, 3)
    with pytest.raises(ValueError, match="logits must be"):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, int))


def test_calibration_from_a_confidence_map_equals_the_probability_version():
    logits, labels = _overconfident(5000, seed=3)
    p = apply_temperature(logits, 1.0)
    from core.evaluation.calibration import confidence_calibration

    ece, bins = confidence_calibration(p.max(1), p.argmax(1) == labels)
    assert ece == pytest.approx(expected_calibration_error(p, labels), abs=1e-5)
    assert bins["pixels"].sum() == 5000
