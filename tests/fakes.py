"""A fake Earth Engine at our adapter boundary (``core.sources.earth_engine.EarthEngineAdapter``).

It returns recorded-like pixels for any grid: Sentinel-2 reflectance x 1e4 with a field pattern,
Sentinel-1 dB, Dynamic World labels, WorldCover ids. It never imports ``ee``.
"""

from __future__ import annotations

import numpy as np

from core.sources.earth_engine import CollectionSpec, PixelGrid


class FakeEarthEngine:
    """Records every request; answers with deterministic pixels."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, PixelGrid]] = []

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:
        self.requests.append((spec.collection, grid))
        h, w = grid.height, grid.width
        yy, xx = np.mgrid[0:h, 0:w]
        fields = ((xx // 25 + yy // 25) % 3).astype(np.float32)
        if spec.collection.startswith("COPERNICUS/S2"):
            return np.stack([800 + 600 * fields + 50 * i for i in range(len(spec.bands))]).astype(spec.dtype)
        if spec.collection == "COPERNICUS/S1_GRD":
            return np.stack([-10 - fields, -17 - fields]).astype(spec.dtype)
        if spec.collection == "ESA/WorldCover/v200":
            return np.choose(fields.astype(int), [10, 40, 80])[None].astype(spec.dtype)
        return np.choose(fields.astype(int), [1, 4, 0])[None].astype(spec.dtype)

    def export(self, spec, grid, name, kind, destination):
        return f"task-{name}"
