"""Spatially disjoint train/validation/test splits and chip windows.

A scene is cut into square blocks of ``block_size`` pixels; each block goes whole to one split,
and chips are cut inside blocks only, so no chip of one split overlaps a pixel of another (the
"spatial block" cross-validation of Roberts et al. 2017, Ecography 40:913, which avoids the
optimistic bias of random pixel splits on autocorrelated imagery).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Block", "block_splits", "chip_windows"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Block:
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
) -> list[Block]:
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
    return [Block(scene, r, c, h, w, s) for (r, c, h, w), s in zip(cells, labels, strict=True)]


def chip_windows(block: Block, chip_size: int, stride: int) -> list[tuple[int, int]]:
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
