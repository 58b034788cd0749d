"""The feature cache of one scene: the base model's features and probabilities over every pixel, once.

The scene is read and tiled exactly as the run policy runs the model on it (:func:`core.inference.policy.input_for_file`,
:func:`core.inference.policy.plan_run`, :meth:`~core.inference.policy.RunPolicy.run`, which blends any number of
output channels across tile overlaps), so the cached base probabilities are those of ``predict``'s map.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import rasterio

from core.correction.session import FeatureCache
from core.inference.policy import input_for_file, plan_run
from core.inference.streaming import _band_indexes, _window_reader
from core.inference.tiling import ForwardFn, ProgressFn

__all__ = ["build_cache", "build_cache_raster", "with_prior_features"]


def _run(policy, read, forward: ForwardFn, h: int, w: int, channels: int, base_names: tuple[str, ...],
         progress: ProgressFn | None) -> FeatureCache:
    """Run ``forward`` by ``policy`` over an H x W input and keep every output channel of every pixel."""
    feats = np.zeros((channels, h, w), np.float32)
    valid = np.zeros((h, w), bool)

    def write(r: int, c: int, out: np.ndarray, ok: np.ndarray) -> None:
        th, tw = ok.shape
        feats[:, r : r + th, c : c + tw] = out
        valid[r : r + th, c : c + tw] = ok

    policy.run(read, forward, write, num_classes=channels, height=h, width=w, progress=progress)
    k0 = len(base_names)
    lp = feats[-k0:]
    p = np.exp(lp - lp.max(axis=0, keepdims=True))
    p /= p.sum(axis=0, keepdims=True)
    return FeatureCache(feats, p.astype(np.float32), valid, tuple(base_names))


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
        cache = _run(policy, read, forward, h, w, channels, tuple(base_names), progress)
        grid = {"crs": src.crs, "transform": src.transform, "height": h, "width": w}
    return cache, grid


def build_cache_raster(raster, card, forward: ForwardFn, *, decision, channels: int, base_names: tuple[str, ...],
                       mask: np.ndarray | None = None, progress: ProgressFn | None = None) -> FeatureCache:
    """:func:`build_cache` for an image in memory (the app's analysis of any source), by the same run policy.

    Args:
        raster: :class:`core.io.raster.GeoRaster` (C, H, W) as the source delivered it.
        card: The base model's card.
        forward: As in :func:`build_cache`.
        decision: The input decision the analysis was run with (:class:`core.inputs.decision.InputDecision`).
        channels: F + K0.
        base_names: The K0 base class names.
        mask: Bool (H, W) AOI mask: pixels outside are not valid (no points, no replay); the network still
            sees them as context, as the analysis' run did.
        progress: Called with (passes done, passes total).

    Returns:
        The cache on the raster's grid.

    Raises:
        ValueError: ``mask`` does not have the raster's shape.
    """
    from core.inputs.decision import prepare_raster
    from core.io.raster import nodata_to_nan

    h, w = raster.height, raster.width
    if mask is not None and mask.shape != (h, w):
        raise ValueError(f"mask {mask.shape} does not match the raster {(h, w)}")
    policy = plan_run(card, h, w, decision=decision)
    src = prepare_raster(raster, policy.decision).select(list(card.bands))

    def read(r: int, c: int, th: int, tw: int) -> np.ndarray:
        return nodata_to_nan(src.data[:, r : r + th, c : c + tw], src.nodata)

    cache = _run(policy, read, forward, h, w, channels, tuple(base_names), progress)
    if mask is not None:
        cache = dataclasses.replace(cache, valid=cache.valid & mask)
    return cache


def with_prior_features(cache: FeatureCache, prior: FeatureCache, name: str) -> FeatureCache:
    """``cache`` with a second network's features attached for the prior estimate of :func:`~core.correction.session.fit_correction`.

    Args:
        cache: The base bundle's cache.
        prior: The second network's cache of the same scene on the same grid (the Dynamic World port's).
        name: The second network's name (recorded on the corrected bundle's card).

    Returns:
        The cache with ``prior_features`` (float32 (F2, H, W), NaN where ``prior`` has no data; ``prior``'s own
        array, not a copy, where it has data everywhere) and ``prior_name``.

    Raises:
        ValueError: The two caches are not on one grid.
    """
    if prior.shape != cache.shape:
        raise ValueError(f"the prior network's cache {prior.shape} is not on the base cache's grid {cache.shape}")
    pf = prior.features if prior.valid.all() else np.where(prior.valid[None], prior.features, np.float32(np.nan))
    return dataclasses.replace(cache, prior_features=pf.astype(np.float32, copy=False), prior_name=name)
