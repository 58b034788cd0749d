"""The feature cache of one scene: the base model's features and probabilities over every pixel, once.

The scene is read and tiled exactly as the run policy runs the model on it (:func:`core.inference.policy.input_for_file`,
:func:`core.inference.policy.plan_run`, :meth:`~core.inference.policy.RunPolicy.run`, which blends any number of
output channels across tile overlaps), so the cached base probabilities are those of ``predict``'s map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from core.correction.session import FeatureCache
from core.inference.policy import input_for_file, plan_run
from core.inference.streaming import _band_indexes, _window_reader
from core.inference.tiling import ForwardFn, ProgressFn

__all__ = ["build_cache"]


def build_cache(src_path: str | Path, card, forward: ForwardFn, *, channels: int, base_names: tuple[str, ...],
                progress: ProgressFn | None = None) -> tuple[FeatureCache, dict]:
    """Run a feature forward over a GeoTIFF by the run policy and keep its output for every pixel.

    Args:
        src_path: Input GeoTIFF.
        card: The base model's card (bands, tile, preprocessing).
        forward: float32 (B, C, T, T) raw -> float32 (B, channels, T, T): features then K0 log-probabilities
            (:func:`models.features.feature_forward`).
        channels: F + K0.
        base_names: The K0 base class names.
        progress: Called with (passes done, passes total).

    Returns:
        (the cache, the grid: ``{"crs", "transform", "height", "width"}``).

    Raises:
        RasterReadError, BandError, InputError: The input cannot be read as the model's input.
    """
    decision = input_for_file(src_path, card)
    with rasterio.open(src_path) as src:
        h, w = src.height, src.width
        policy = plan_run(card, h, w, decision=decision)
        read = _window_reader(src, src_path, _band_indexes(src, src_path, list(card.bands), policy.decision), policy.decision)
        feats = np.zeros((channels, h, w), np.float32)
        valid = np.zeros((h, w), bool)

        def write(r: int, c: int, out: np.ndarray, ok: np.ndarray) -> None:
            th, tw = ok.shape
            feats[:, r : r + th, c : c + tw] = out
            valid[r : r + th, c : c + tw] = ok

        policy.run(read, forward, write, num_classes=channels, progress=progress)
        grid = {"crs": src.crs, "transform": src.transform, "height": h, "width": w}
    k0 = len(base_names)
    lp = feats[-k0:]
    p = np.exp(lp - lp.max(axis=0, keepdims=True))
    p /= p.sum(axis=0, keepdims=True)
    return FeatureCache(feats, p.astype(np.float32), valid, tuple(base_names)), grid
