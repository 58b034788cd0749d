"""Exported chips: fill values read back from the export manifest.

The chips' train/val/test splits are computed in :mod:`core.splits` (:func:`core.splits.chip_splits`,
with every other split); ``ChipFootprint`` and ``chip_splits`` are re-exported here only while
``trainer/data.py`` imports them from this module.
"""

from __future__ import annotations

import math

from core.splits import ChipFootprint, chip_splits

__all__ = ["manifest_fill", "ChipFootprint", "chip_splits"]


def manifest_fill(value, default: float | None) -> float | None:
    """A fill value from a manifest cell read as text: empty (an older manifest) gives ``default``, ``"nan"`` NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    text = str(value).strip()
    if not text or text in ("<NA>", "None"):
        return default
    return float(text)
