"""Spatially disjoint train/validation/test splits: blocks of a scene, and exported chips.

The one place where splits are computed, for both kinds of training data.

**Scenes** (:func:`block_splits`). A scene is cut into square blocks of ``block_size`` pixels; each
block goes whole to one split, and chips are cut inside blocks only (:func:`chip_windows`), so no
chip of one split overlaps a pixel of another (the "spatial block" cross-validation of Roberts et
al. 2017, Ecography 40:913, which avoids the optimistic bias of random pixel splits on
autocorrelated imagery).

**Exported chips** (:func:`chip_splits`). Chips exported at points closer than a chip's width
overlap on the ground (a 224 px chip at 10 m is 2.24 km wide). Splitting them point by point, or by
a cell that holds each point, puts the two halves of an overlap into different splits and so puts
test pixels under training chips. Here:

1. every chip's footprint (in its own CRS, grown by one pixel so that chips that touch count as
   overlapping) is taken to lon/lat, and chips whose footprints intersect are grouped (connected
   components, ``shapely.STRtree``);
2. a group that fits in one cell of ``cell_deg`` degrees takes the split of the cell holding its
   centre (a stable hash of cell and seed, :func:`cell_split`), whole;
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
from dataclasses import asdict, dataclass

import numpy as np
from affine import Affine

__all__ = ["SplitBlock", "block_splits", "chip_windows", "ChipFootprint", "cell_split", "chip_splits", "SPLITS"]

SPLITS = ("train", "val", "test")
RANK = {"train": 0, "val": 1, "test": 2}
"""Rank of a split: where chips of two splits overlap, the one of the lower rank is left out."""


@dataclass(frozen=True)
class SplitBlock:
    """A rectangular block of a scene assigned to one split (pixel offsets and size)."""

    scene: str
    row_off: int
    col_off: int
    height: int
    width: int
    split: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def block_splits(
    scene: str,
    height: int,
    width: int,
    block_size: int,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    whole: str | None = None,
) -> list[SplitBlock]:
    """Assign the blocks of one scene to train/val/test.

    The blocks are shuffled with a generator seeded by ``seed`` and the scene id, then the first
    ``round(test_fraction * n)`` go to test and the next ``round(val_fraction * n)`` to val (each at
    least 1 when the scene has 3 or more blocks), the rest to train.

    Args:
        scene: Scene id (part of the seed, so scenes get different layouts).
        height: Scene rows H.
        width: Scene columns W.
        block_size: Block side in pixels; edge blocks are smaller when H or W is not a multiple.
        val_fraction: Share of blocks for validation.
        test_fraction: Share of blocks for test.
        seed: Random seed.
        whole: Put every block in this split instead (``"train"``, ``"val"`` or ``"test"``).

    Returns:
        Blocks in row-major order.

    Raises:
        ValueError: Fractions outside [0, 1) or adding up to 1 or more; unknown ``whole`` split.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in [0, 1) and sum below 1")
    if whole is not None and whole not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {whole!r}")
    cells = [
        (r, c, min(block_size, height - r), min(block_size, width - c))
        for r in range(0, height, block_size)
        for c in range(0, width, block_size)
    ]
    n = len(cells)
    labels = ["train"] * n
    if whole is not None:
        labels = [whole] * n
    elif n >= 3:
        rng = np.random.default_rng([seed, *scene.encode()])
        order = rng.permutation(n)
        n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
        n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
        for i in order[:n_test]:
            labels[i] = "test"
        for i in order[n_test : n_test + n_val]:
            labels[i] = "val"
    return [SplitBlock(scene, r, c, h, w, s) for (r, c, h, w), s in zip(cells, labels, strict=True)]


def chip_windows(block: SplitBlock, chip_size: int, stride: int) -> list[tuple[int, int]]:
    """(row_off, col_off) of the chips inside a block, in scene pixels.

    Chips never cross the block's edge; the last chip of a row/column is moved back to end at the
    edge so that the whole block is covered. A block smaller than a chip yields no chip.

    Args:
        block: The block.
        chip_size: Chip side in pixels.
        stride: Distance between chip origins in pixels.
    """

    def starts(size: int) -> list[int]:
        if size < chip_size:
            return []
        out = list(range(0, size - chip_size + 1, stride))
        if out[-1] != size - chip_size:
            out.append(size - chip_size)
        return out

    return [(block.row_off + r, block.col_off + c) for r in starts(block.height) for c in starts(block.width)]


@dataclass(frozen=True)
class ChipFootprint:
    """Where a chip lies: its id, CRS, affine transform and size in pixels."""

    id: str
    crs: str
    transform: Affine
    width: int
    height: int


def cell_split(lon: float, lat: float, cell_deg: float, val: float, test: float, seed: int) -> str:
    """Split of the cell holding a point: a stable hash (SHA-256) of (cell, seed) mapped to [0, 1).

    Args:
        lon: Longitude of the point (degrees).
        lat: Latitude of the point (degrees).
        cell_deg: Cell side in degrees.
        val: Share of cells for validation.
        test: Share of cells for testing.
        seed: Seed of the hash.

    Returns:
        ``"test"`` when the hash is below ``test``, ``"val"`` below ``test + val``, else ``"train"``.
    """
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
