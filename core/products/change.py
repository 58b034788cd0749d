"""Change between two class maps of the same grid: change map, from-to matrix, net change.

Two class maps of one AOI at two dates (two sample scenes of the same grid, two Earth Engine date
ranges, two uploads) are compared pixel by pixel. The from-to (transition) matrix counts area per
(class at date 1, class at date 2) pair, in km^2 from each pixel's true ground area (so geographic
grids are handled), and in % of the compared area. Pixels without a class at either date are left
out and counted.

The change map codes each pixel ``from * K + to`` (uint8 when K <= 15, else uint16), so a GIS can
decode it; unchanged pixels keep their code ``k * K + k`` and the no-data value is the dtype's
maximum. Areas here are map (pixel-counted) areas; for publishable change areas, sample the change
map as strata and use :mod:`core.evaluation.accuracy` (Olofsson et al. 2014 treat change classes exactly so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import GridMismatchError
from core.io.raster import GeoRaster

__all__ = ["ChangeResult", "transition_matrix", "change_between", "change_code_dtype"]


def change_code_dtype(num_classes: int) -> np.dtype:
    """uint8 when every ``from * K + to`` code fits below 255, else uint16."""
    return np.dtype(np.uint8) if num_classes * num_classes <= 255 else np.dtype(np.uint16)


def transition_matrix(before: np.ndarray, after: np.ndarray, num_classes: int, pixel_area_km2: np.ndarray | float = 1.0,
                      nodata: int = 255) -> tuple[np.ndarray, int]:
    """Area of every (before, after) class pair.

    Args:
        before: Integer (H, W) class indices 0..K-1 at date 1 (``nodata`` or >= K: no class).
        after: Integer (H, W) class indices at date 2.
        num_classes: K.
        pixel_area_km2: Ground area of each pixel in km^2: a scalar, one value per row (H, 1) or
            per pixel (H, W).
        nodata: No-class value.

    Returns:
        (matrix, excluded): float64 (K, K) area, rows = before, columns = after; number of pixels
        left out because either date has no class.

    Raises:
        ValueError: Shapes differ.
    """
    b = np.asarray(before)
    a = np.asarray(after)
    if b.shape != a.shape:
        raise ValueError(f"the two maps differ in shape: {b.shape} and {a.shape}")
    k = int(num_classes)
    valid = (b != nodata) & (a != nodata) & (b >= 0) & (b < k) & (a >= 0) & (a < k)
    area = np.broadcast_to(np.asarray(pixel_area_km2, float), b.shape)
    codes = b[valid].astype(np.int64) * k + a[valid].astype(np.int64)
    m = np.bincount(codes, weights=area[valid], minlength=k * k).reshape(k, k)
    return m, int(valid.size - valid.sum())


@dataclass(frozen=True)
class ChangeResult:
    """Change between two class maps.

    Attributes:
        class_names: (K,) class names; ``colors`` their "#rrggbb" colours.
        matrix_km2: float64 (K, K) from-to area in km^2 (rows = date 1, columns = date 2).
        change_map: GeoRaster (1, H, W) of ``from * K + to`` codes, nodata = dtype maximum.
        changed: Bool (H, W), True where the class differs between the dates.
        excluded_pixels: Pixels without a class at either date.
        labels: (date-1 label, date-2 label) for tables and charts.
    """

    class_names: list[str]
    colors: list[str]
    matrix_km2: np.ndarray
    change_map: GeoRaster
    changed: np.ndarray
    excluded_pixels: int
    labels: tuple[str, str]

    @property
    def total_km2(self) -> float:
        """Compared area."""
        return float(self.matrix_km2.sum())

    @property
    def changed_km2(self) -> float:
        """Area whose class differs between the dates."""
        return float(self.total_km2 - np.trace(self.matrix_km2))

    def matrix_table(self, unit: str = "km2") -> pd.DataFrame:
        """The from-to matrix as a table, in ``"km2"`` or ``"%"`` of the compared area, with totals."""
        m = self.matrix_km2 if unit == "km2" else 100 * self.matrix_km2 / max(self.total_km2, 1e-12)
        df = pd.DataFrame(m, index=[f"{n} ({self.labels[0]})" for n in self.class_names],
                          columns=[f"{n} ({self.labels[1]})" for n in self.class_names])
        df[f"total {self.labels[0]}"] = df.sum(axis=1)
        df.loc[f"total {self.labels[1]}"] = df.sum(axis=0)
        return df

    def net_change(self) -> pd.DataFrame:
        """Per class: area at each date, gross loss and gain, net change (km^2 and % of date-1 area)."""
        before = self.matrix_km2.sum(axis=1)
        after = self.matrix_km2.sum(axis=0)
        stay = np.diag(self.matrix_km2)
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(before > 0, 100 * (after - before) / before, np.nan)
        return pd.DataFrame({"class": self.class_names, f"{self.labels[0]}_km2": before, f"{self.labels[1]}_km2": after,
                             "loss_km2": before - stay, "gain_km2": after - stay, "net_km2": after - before, "net_pct": pct})

    def transitions(self, min_km2: float = 0.0) -> pd.DataFrame:
        """Long table of non-empty transitions (from, to, km^2, %), largest first, for CSV and Sankey diagrams."""
        rows = []
        total = max(self.total_km2, 1e-12)
        for i, fr in enumerate(self.class_names):
            for j, to in enumerate(self.class_names):
                v = float(self.matrix_km2[i, j])
                if v > min_km2:
                    rows.append({"from": fr, "to": to, "km2": v, "pct": 100 * v / total, "changed": i != j})
        return pd.DataFrame(rows, columns=["from", "to", "km2", "pct", "changed"]).sort_values("km2", ascending=False, ignore_index=True)


def change_between(before: GeoRaster, after: GeoRaster, class_ids: Sequence[int], class_names: Sequence[str],
                   colors: Sequence[str] | None = None, labels: tuple[str, str] = ("date 1", "date 2"), nodata: int = 255) -> ChangeResult:
    """Change between two class maps of one scheme on the same grid.

    Args:
        before: uint8 GeoRaster (1, H, W) of class *ids* at date 1 (``nodata`` = no class).
        after: The same at date 2, on exactly the same grid.
        class_ids: (K,) class ids of the scheme, in order.
        class_names: (K,) class names.
        colors: (K,) "#rrggbb" colours (grey if omitted).
        labels: Names of the two dates (e.g. the scene dates).
        nodata: No-class value of the inputs.

    Returns:
        The change result (areas from the grid's true pixel areas, km^2).

    Raises:
        GridMismatchError: The grids differ (shape, CRS or transform): warp one onto the other first;
            or a map has no CRS (two unreferenced rasters of one size may show two different places,
            e.g. the sample pack's DFC2020 patches, so their "change" would be meaningless).
    """
    for name, m in (("date 1", before), ("date 2", after)):
        if m.crs is None:
            raise GridMismatchError(
                f"the {name} map has no CRS: without georeferencing nothing says both maps show the same place; "
                "use two georeferenced maps of one grid (e.g. two dates of one scene)")
    if not before.same_grid(after):
        raise GridMismatchError(
            f"the two maps are not on the same grid ({before.height} x {before.width} vs {after.height} x {after.width} px, "
            "or a different CRS/transform): choose two dates of one scene grid, or warp one map onto the other")
    k = len(class_ids)
    lut = np.full(max(256, max(class_ids) + 1), nodata, np.int64)
    lut[np.asarray(class_ids)] = np.arange(k)
    b = lut[before.data[0].astype(np.int64)]
    a = lut[after.data[0].astype(np.int64)]
    area_km2 = (before.pixel_area_m2() / 1e6)[:, None]  # (H, 1): one area per row
    matrix, excluded = transition_matrix(b, a, k, area_km2, nodata)
    dtype = change_code_dtype(k)
    fill = np.iinfo(dtype).max
    valid = (b != nodata) & (a != nodata)
    codes = np.where(valid, b * k + a, fill).astype(dtype)
    cmap = GeoRaster(codes[None], before.crs, before.transform, float(fill), ("from_to_code",),
                     meta={"encoding": f"from_index * {k} + to_index", "classes": list(class_names)})
    return ChangeResult(list(class_names), list(colors) if colors is not None else ["#999999"] * k, matrix, cmap,
                        valid & (b != a), excluded, labels)
