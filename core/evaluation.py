"""Compare class maps with reference labels, across class schemes.

One function for the app, the trainer and the benchmarks: the prediction and the reference are
brought into one scheme (:func:`core.classes.harmonize`), turned into class indices, and added to a
:class:`core.metrics.ConfusionAccumulator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.classes import NODATA_CLASS, ClassScheme, Crosswalk, common_scheme, harmonize
from core.metrics import ConfusionAccumulator, SegmentationMetrics, metrics_from_confusion

__all__ = ["Comparison"]


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
