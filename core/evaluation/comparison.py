"""Compare class maps with reference labels, across class schemes.

One place for the app, the trainer and the benchmarks: the prediction and the reference are
brought into one scheme (:func:`core.classes.harmonize`), turned into class indices, and added to a
:class:`core.evaluation.metrics.ConfusionAccumulator` (:class:`Comparison`, over any number of
windows). :func:`compare` does this for the predicted class map of an AOI (the run policy's
prediction with the AOI polygon as ``mask``) and returns metrics, class areas and the per-pixel
agreement, all on the prediction's grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from core.classes import NODATA_CLASS, ClassScheme, Crosswalk, common_scheme, get_scheme, harmonize
from core.evaluation.metrics import ConfusionAccumulator, SegmentationMetrics, class_areas, metrics_from_confusion
from core.inference.streaming import ClassMap
from core.io.raster import GeoRaster

__all__ = ["Comparison", "compare", "CompareResult", "AreaRow"]


@dataclass
class Comparison:
    """Accumulates prediction-vs-reference agreement over any number of windows.

    Args:
        prediction_scheme: Scheme name of the predictions (the model's).
        reference_scheme: Scheme name of the reference labels.

    Attributes:
        scheme: The common scheme metrics are computed in.
        crosswalk: The crosswalk applied (``None`` when the schemes are equal).
    """

    prediction_scheme: str
    reference_scheme: str
    scheme: ClassScheme = field(init=False)
    crosswalk: Crosswalk | None = field(init=False)
    accumulator: ConfusionAccumulator = field(init=False)

    def __post_init__(self) -> None:
        self.scheme, self.crosswalk = common_scheme(self.prediction_scheme, self.reference_scheme)
        self.accumulator = ConfusionAccumulator(self.scheme.num_classes, ignore_index=NODATA_CLASS)

    def add(self, prediction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one window.

        Args:
            prediction: uint8 (H, W) class ids of the prediction scheme (255 = no prediction).
            reference: Integer (H, W) class ids of the reference scheme (its ignore id = no label).

        Returns:
            (prediction, reference) as uint8 class indices 0..K-1 of the common scheme, 255 where
            excluded, for maps of agreement.

        Raises:
            ValueError: Shapes differ.
        """
        if prediction.shape != reference.shape:
            raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} differ in shape")
        p, r, _, _ = harmonize(prediction, self.prediction_scheme, reference, self.reference_scheme)
        pi, ri = self.scheme.to_index(p), self.scheme.to_index(r)
        self.accumulator.update(pi, ri)
        return pi, ri

    @property
    def expressible(self) -> list[str]:
        """Classes of the common scheme the reference can express (all, unless the reference was crosswalked).

        A crosswalk from the reference scheme reaches only some target classes (OpenStreetMap land
        use has no ``bare`` or ``snow_and_ice``); the others can never be right in the reference,
        so mIoU averages over the reachable ones only.
        """
        cw = self.crosswalk
        if cw is None or cw.source != self.reference_scheme:
            return list(self.scheme.names)
        reached = {t for t in cw.mapping.values() if t is not None}
        return [c.name for c in self.scheme.classes if c.id in reached]

    def metrics(self) -> SegmentationMetrics:
        """Metrics over everything added so far, in the common scheme (mIoU over :attr:`expressible`)."""
        return metrics_from_confusion(self.accumulator.matrix, self.scheme.names,
                                      excluded_fraction=self.accumulator.excluded_fraction, averaged=self.expressible)

@dataclass(frozen=True)
class AreaRow:
    """Area of one class in the prediction and in the reference (km^2 and % of compared area)."""

    name: str
    color: str
    predicted_km2: float
    reference_km2: float
    predicted_pct: float
    reference_pct: float


@dataclass(frozen=True)
class CompareResult:
    """Prediction vs one reference product.

    Attributes:
        scheme: The common class scheme of the comparison.
        crosswalk: Crosswalk applied to reach it (``None`` if the schemes were equal).
        metrics: IoU, mIoU, OA, kappa, precision/recall/F1, confusion matrix.
        prediction: uint8 (H, W) class indices of ``scheme``, 255 where excluded.
        reference: uint8 (H, W) class indices of ``scheme``, 255 where excluded.
        reference_ids: uint8 (H, W) the reference in its own scheme's ids, for display.
        areas: Per-class areas over the pixels that have both a prediction and a reference.
        excluded_fraction: Share of AOI pixels without a reference label or a prediction.
    """

    scheme: ClassScheme
    crosswalk: Crosswalk | None
    metrics: SegmentationMetrics
    prediction: np.ndarray
    reference: np.ndarray
    reference_ids: np.ndarray
    areas: list[AreaRow]
    excluded_fraction: float


def compare(
    prediction: ClassMap,
    prediction_scheme: str,
    reference: GeoRaster,
    reference_scheme: str,
    aoi_mask: np.ndarray | None = None,
) -> CompareResult:
    """Compare a prediction with reference labels on the same grid.

    Args:
        prediction: The class map.
        prediction_scheme: Its scheme name (the model card's).
        reference: uint8 (1, H, W) reference class ids on the same grid.
        reference_scheme: The reference's scheme name.
        aoi_mask: Bool (H, W): pixels outside the AOI are left out.

    Returns:
        Metrics, agreement arrays and class areas.

    Raises:
        GridMismatchError: The reference is not on the prediction's grid.
        SchemeError: No crosswalk between the schemes.
    """
    prediction.classes.require_same_grid(reference, "prediction and reference labels")
    pred = prediction.classes.data[0]
    ref = reference.data[0]
    ref_scheme = get_scheme(reference_scheme)
    ref_ids = ref.astype(np.uint8)
    if aoi_mask is not None:
        pred = np.where(aoi_mask, pred, NODATA_CLASS).astype(np.uint8)
        ignore = ref_scheme.ignore_index if ref_scheme.ignore_index is not None else NODATA_CLASS
        ref_ids = np.where(aoi_mask, ref_ids, ignore).astype(np.uint8)
    cmp = Comparison(prediction_scheme, reference_scheme)
    p_idx, r_idx = cmp.add(pred, ref_ids)
    both = (p_idx != 255) & (r_idx != 255)
    p_idx = np.where(both, p_idx, 255).astype(np.uint8)
    r_idx = np.where(both, r_idx, 255).astype(np.uint8)
    metrics = cmp.metrics()
    k = cmp.scheme.num_classes
    row_area = prediction.classes.pixel_area_m2()
    pa = class_areas(p_idx, k, row_area)
    ra = class_areas(r_idx, k, row_area)
    total = max(pa.sum(), 1e-12)
    areas = [
        AreaRow(c.name, c.color, float(pa[i]), float(ra[i]), float(100 * pa[i] / total), float(100 * ra[i] / total))
        for i, c in enumerate(cmp.scheme.classes)
    ]
    n_aoi = int(aoi_mask.sum()) if aoi_mask is not None else pred.size
    excluded = 1.0 - both.sum() / n_aoi if n_aoi else 0.0
    # one excluded share everywhere (Metrics page, CSV, JSON): of the AOI polygon, not of its window
    metrics = replace(metrics, excluded_fraction=float(excluded))
    return CompareResult(cmp.scheme, cmp.crosswalk, metrics, p_idx, r_idx, ref_ids, areas, float(excluded))
