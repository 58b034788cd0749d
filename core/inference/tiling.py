"""Tiled, overlap-blended inference over rasters of any size.

The raster is covered by a regular grid of square tiles of ``tile`` pixels that overlap their
neighbours by ``overlap`` pixels (stride = tile - overlap). Each tile's class probabilities are
weighted by a smooth window that ramps from ~0 to 1 over the overlap with a squared sine, so that
in every overlap the two weights add up to exactly 1 (sin^2 + cos^2 = 1): the blend is continuous
and shows no seams. Tiles that reach past the raster's edge are filled by reflect padding.

The work streams: tiles are processed row by row and a region is handed to ``write`` as soon as no
later tile can touch it, so memory holds one batch of tiles plus a carry of ``overlap`` rows across
the width (K x overlap x W float32), never the whole raster. The network is any callable that
maps a batch ``(B, C, T, T)`` to probabilities ``(B, K, T, T)``, so this module needs no torch and
is tested with plain functions (the approach of terratorch's ``tiled_inference``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "blend_window", "predict_tiled", "predict_full_frame", "ReadFn", "ForwardFn", "WriteFn", "ProgressFn"]

ReadFn = Callable[[int, int, int, int], np.ndarray]
"""``read(row_off, col_off, height, width) -> (C, height, width) float32``, NaN marks nodata."""
ForwardFn = Callable[[np.ndarray], np.ndarray]
"""``forward(x (B, C, T, T) float32) -> probabilities (B, K, T, T) float32``."""
WriteFn = Callable[[int, int, np.ndarray, np.ndarray], None]
"""``write(row_off, col_off, probs (K, h, w) float32, valid (h, w) bool)`` for a finished region."""
ProgressFn = Callable[[int, int], None]
"""``progress(tiles_done, tiles_total)``."""


@dataclass(frozen=True)
class TileGrid:
    """A regular grid of overlapping square tiles over an H x W raster.

    Attributes:
        height: Raster rows H.
        width: Raster columns W.
        tile: Tile side T in pixels (a multiple of 32 for U-Nets with 5 down-samplings).
        overlap: Overlap o between neighbouring tiles in pixels, 0 <= o <= T / 2.
    """

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"raster must have at least one pixel, got {self.height} x {self.width}")
        if self.tile <= 0:
            raise ValueError(f"tile must be positive, got {self.tile}")
        if not 0 <= 2 * self.overlap <= self.tile:
            raise ValueError(
                f"overlap must be between 0 and tile/2 ({self.tile // 2}) pixels, got {self.overlap}"
            )

    @property
    def stride(self) -> int:
        """Distance between tile origins, T - o."""
        return self.tile - self.overlap

    @property
    def n_rows(self) -> int:
        """Tile rows: the smallest n with o + n * stride >= H."""
        return max(1, math.ceil((self.height - self.overlap) / self.stride))

    @property
    def n_cols(self) -> int:
        """Tile columns: the smallest n with o + n * stride >= W."""
        return max(1, math.ceil((self.width - self.overlap) / self.stride))

    @property
    def n_tiles(self) -> int:
        """Total number of tiles."""
        return self.n_rows * self.n_cols

    @property
    def padded_width(self) -> int:
        """Width covered by the grid, >= W."""
        return self.overlap + self.n_cols * self.stride

    def origins(self) -> Iterator[tuple[int, int]]:
        """(row_off, col_off) of every tile, row-major."""
        for r in range(self.n_rows):
            for c in range(self.n_cols):
                yield r * self.stride, c * self.stride


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """The 2-D blending weight of one tile.

    1-D profile: ``sin^2(pi/2 * (i + 0.5) / o)`` over the first o pixels, 1 in the middle, the
    mirror image over the last o pixels; the 2-D window is the outer product. Neighbouring tiles'
    weights sum to 1 in their overlap (a partition of unity), and no weight is 0.

    Args:
        tile: Tile side T in pixels.
        overlap: Ramp length o in pixels (0 gives a flat window of ones).

    Returns:
        float32 array (T, T) in (0, 1].
    """
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        w[:overlap] = ramp
        w[tile - overlap :] = ramp[::-1]
    return np.outer(w, w).astype(np.float32)


def _pad_to(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad a (C, h, w) array at the bottom/right to (C, height, width)."""
    ph, pw = height - x.shape[1], width - x.shape[2]
    if ph == 0 and pw == 0:
        return x
    out = x
    for axis, pad in ((1, ph), (2, pw)):
        if pad <= 0:
            continue
        widths = [(0, 0)] * 3
        widths[axis] = (0, pad)
        mode = "reflect" if out.shape[axis] > 1 else "edge"
        out = np.pad(out, widths, mode=mode)
    return out


def predict_tiled(
    read: ReadFn,
    forward: ForwardFn,
    write: WriteFn,
    *,
    height: int,
    width: int,
    num_classes: int,
    tile: int,
    overlap: int,
    batch_size: int,
    progress: ProgressFn | None = None,
) -> TileGrid:
    """Run ``forward`` over a raster tile by tile and blend the overlaps.

    Callers go through the run policy (:meth:`core.inference.policy.RunPolicy.run`), which decides
    ``tile``, ``overlap`` and ``batch_size``; nothing else calls this (``tests/test_run_policy.py``).

    Args:
        read: Reads a window of the input inside the raster, see :data:`ReadFn`.
        forward: The network, see :data:`ForwardFn`; must return probabilities (softmax).
        write: Receives each finished region once, in row-major order; together the regions
            cover the raster exactly. ``valid`` is False where any input band was NaN.
        height: Raster rows H.
        width: Raster columns W.
        num_classes: K, the number of probability channels ``forward`` returns.
        tile: Tile side T in pixels.
        overlap: Overlap o in pixels, 0 <= o <= T / 2.
        batch_size: Tiles per ``forward`` call.
        progress: Called after each batch with (tiles done, tiles total).

    Returns:
        The tile grid used.

    Raises:
        ValueError: Bad tile/overlap, or ``forward`` returned the wrong shape.
    """
    grid = TileGrid(height, width, tile, overlap)
    t, o, s = tile, overlap, grid.stride
    k = num_classes
    w2 = blend_window(t, o)
    row_carry = np.zeros((k, o, grid.padded_width), dtype=np.float32)
    row_carry_w = np.zeros((o, grid.padded_width), dtype=np.float32)
    done = 0
    for r in range(grid.n_rows):
        y0 = r * s
        last_row = r == grid.n_rows - 1
        col_carry = col_carry_w = None
        for b0 in range(0, grid.n_cols, batch_size):
            cols = range(b0, min(b0 + batch_size, grid.n_cols))
            batch = []
            for c in cols:
                x0 = c * s
                h, w = min(t, height - y0), min(t, width - x0)
                batch.append(_pad_to(read(y0, x0, h, w).astype(np.float32, copy=False), t, t))
            x = np.stack(batch)
            probs = np.asarray(forward(x), dtype=np.float32)
            if probs.shape != (len(batch), k, t, t):
                raise ValueError(f"forward returned {probs.shape}, expected {(len(batch), k, t, t)}")
            for i, c in enumerate(cols):
                x0 = c * s
                last_col = c == grid.n_cols - 1
                acc = probs[i] * w2
                acc_w = w2.copy()
                if o:
                    if c > 0:
                        acc[:, :, :o] += col_carry
                        acc_w[:, :o] += col_carry_w
                    if r > 0:
                        a = o if c > 0 else 0
                        acc[:, :o, a:] += row_carry[:, :, x0 + a : x0 + t]
                        acc_w[:o, a:] += row_carry_w[:, x0 + a : x0 + t]
                hh = min(t if last_row else s, height - y0)
                ww = min(t if last_col else s, width - x0)
                if hh > 0 and ww > 0:
                    valid = ~np.isnan(x[i, :, :hh, :ww]).any(axis=0)
                    write(y0, x0, acc[:, :hh, :ww] / acc_w[:hh, :ww], valid)
                if o:
                    if not last_row:
                        wr = t if last_col else s
                        row_carry[:, :, x0 : x0 + wr] = acc[:, s:, :wr]
                        row_carry_w[:, x0 : x0 + wr] = acc_w[s:, :wr]
                    if not last_col:
                        col_carry = acc[:, :, s:].copy()
                        col_carry_w = acc_w[:, s:].copy()
            done += len(batch)
            if progress is not None:
                progress(done, grid.n_tiles)
    return grid


def predict_full_frame(
    read: ReadFn,
    forward: ForwardFn,
    write: WriteFn,
    *,
    height: int,
    width: int,
    num_classes: int,
    progress: ProgressFn | None = None,
) -> None:
    """Run a network that takes any size over the whole raster in one pass (no tiles, no blending).

    The raster is reflect-padded at the bottom/right to (H + H % 2, W + W % 2), the even size the
    Dynamic World network needs, never to a square (a 16 x 5000 px strip stays 16 x 5000 px).

    Args:
        read: See :data:`ReadFn`; called once for the whole raster.
        forward: See :data:`ForwardFn`, taking (1, C, H', W').
        write: Called once with the whole raster's probabilities (K, H, W).
        height: Raster rows H.
        width: Raster columns W.
        num_classes: K.
        progress: Called with (1, 1) when done.

    Raises:
        ValueError: ``forward`` returned the wrong shape.
    """
    h2, w2 = height + height % 2, width + width % 2
    x = read(0, 0, height, width).astype(np.float32, copy=False)
    probs = np.asarray(forward(_pad_to(x, h2, w2)[None]), dtype=np.float32)
    if probs.shape != (1, num_classes, h2, w2):
        raise ValueError(f"forward returned {probs.shape}, expected {(1, num_classes, h2, w2)}")
    write(0, 0, probs[0, :, :height, :width], ~np.isnan(x).any(axis=0))
    if progress is not None:
        progress(1, 1)
