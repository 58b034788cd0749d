"""Exported chips: fill values from the manifest, and train/val/test splits without overlap.

Chips exported at points closer than a chip's width overlap on the ground (a 224 px chip at 10 m is
2.24 km wide). Splitting them point by point, or by a cell that holds each point, puts the two
halves of an overlap into different splits and so puts test pixels under training chips. Here:

1. every chip's footprint (in its own CRS, grown by one pixel so that chips that touch count as
   overlapping) is taken to lon/lat, and chips whose footprints intersect are grouped (connected
   components, ``shapely.STRtree``);
2. a group that fits in one cell of ``cell_deg`` degrees takes the split of the cell holding its
   centre (a stable hash of cell and seed), whole;
3. a larger group (a dense grid of points) takes each chip's cell split, and where chips of two
   splits still overlap the one of the lower rank (train < val < test) is left out: a buffer
   along the cell edges.

After this no two chips of different splits overlap or touch, so no test or validation pixel lies
under a training chip.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine

__all__ = ["ChipFootprint", "cell_split", "chip_splits", "manifest_fill"]

RANK = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class ChipFootprint:
    """Where a chip lies: its id, CRS, affine transform and size in pixels."""

    id: str
    crs: str
    transform: Affine
    width: int
    height: int


def cell_split(lon: float, lat: float, cell_deg: float, val: float, test: float, seed: int) -> str:
    """Split of the cell holding a point: a stable hash (SHA-256) of (cell, seed) mapped to [0, 1)."""
    key = f"{math.floor(lon / cell_deg)}:{math.floor(lat / cell_deg)}:{seed}".encode()
    u = int(hashlib.sha256(key).hexdigest()[:8], 16) / 2**32
    return "test" if u < test else "val" if u < test + val else "train"


def _lonlat_box(chip: ChipFootprint, grow_px: float = 1.0):
    from rasterio.warp import transform_bounds
    from shapely.geometry import box

    t = chip.transform
    px = abs(t.a) * grow_px
    left, top = t.c, t.f
    right, bottom = t.c + t.a * chip.width, t.f + t.e * chip.height
    w, s, e, n = transform_bounds(chip.crs, "EPSG:4326", min(left, right) - px, min(top, bottom) - px,
                                  max(left, right) + px, max(top, bottom) + px, densify_pts=21)
    return box(w, s, e, n)


def chip_splits(chips: Sequence[ChipFootprint], *, cell_deg: float, val: float, test: float, seed: int) -> dict[str, str | None]:
    """Train/val/test split of every chip such that chips of different splits neither overlap nor touch.

    Args:
        chips: The chips' footprints.
        cell_deg: Cell size in degrees; must be larger than a chip for most groups to stay whole.
        val: Share of cells for validation.
        test: Share of cells for testing.
        seed: Seed of the cell hash.

    Returns:
        Chip id -> ``"train"``, ``"val"``, ``"test"``, or ``None`` for a chip left out as a buffer
        between splits.
    """
    from shapely import STRtree

    if not chips:
        return {}
    boxes = [_lonlat_box(c) for c in chips]
    tree = STRtree(boxes)
    left, right = tree.query(boxes, predicate="intersects")
    pairs = [(int(i), int(j)) for i, j in zip(left, right, strict=True) if i < j]
    parent = list(range(len(chips)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(len(chips)):
        groups.setdefault(find(i), []).append(i)
    split: list[str] = [""] * len(chips)
    for members in groups.values():
        b = np.array([boxes[i].bounds for i in members])
        w, s, e, n = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        if e - w <= cell_deg and n - s <= cell_deg:
            whole = cell_split((w + e) / 2, (s + n) / 2, cell_deg, val, test, seed)
            for i in members:
                split[i] = whole
        else:
            for i in members:
                c = boxes[i].centroid
                split[i] = cell_split(c.x, c.y, cell_deg, val, test, seed)
    out: dict[str, str | None] = {c.id: split[i] for i, c in enumerate(chips)}
    for i, j in pairs:
        if split[i] != split[j]:
            low = i if RANK[split[i]] < RANK[split[j]] else j
            out[chips[low].id] = None
    return out


def manifest_fill(value, default: float | None) -> float | None:
    """A fill value from a manifest cell read as text: empty (an older manifest) gives ``default``, ``"nan"`` NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    text = str(value).strip()
    if not text or text in ("<NA>", "None"):
        return default
    return float(text)
