"""Accuracy metrics of a class map against reference labels, from one confusion matrix.

The confusion matrix is accumulated with torchmetrics' ``MulticlassConfusionMatrix`` (rows =
reference class, columns = predicted class; pixels whose reference is the ignore index, or whose
prediction is nodata, are left out). Every metric is then derived from that one matrix ``M``:

- IoU_k = M_kk / (sum_j M_kj + sum_i M_ik - M_kk)  (Jaccard index; Everingham et al. 2010, PASCAL VOC)
- mIoU = mean of IoU_k over the classes present in the reference or the prediction
- OA = trace(M) / sum(M)  (overall accuracy; Congalton 1991)
- precision_k = M_kk / sum_i M_ik, recall_k = M_kk / sum_j M_kj, F1_k = 2 P R / (P + R)
- kappa = (p_o - p_e) / (1 - p_e), p_e = sum_k (row_k * col_k) / N^2  (Cohen 1960)

A class absent from both reference and prediction has an undefined (NaN) IoU/precision/recall and
is left out of the means rather than counted as 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

__all__ = ["ConfusionAccumulator", "SegmentationMetrics", "metrics_from_confusion", "class_areas"]


class ConfusionAccumulator:
    """Accumulates a K x K confusion matrix over any number of (prediction, reference) pairs.

    Args:
        num_classes: K; class indices are 0..K-1.
        ignore_index: Reference value to leave out (unlabelled pixels), e.g. 255.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self._cm = MulticlassConfusionMatrix(
            num_classes=self.num_classes, ignore_index=ignore_index, validate_args=False, sync_on_compute=False
        )  # a local accumulator: never synchronised across distributed processes
        self._ignored = 0
        self._total = 0

    def update(self, prediction: np.ndarray, reference: np.ndarray) -> None:
        """Add a pair of class-index maps.

        Args:
            prediction: Integer array (any shape) of predicted indices 0..K-1; any other value
                (nodata, e.g. 255) leaves the pixel out.
            reference: Integer array of the same shape, indices 0..K-1 or ``ignore_index``.

        Raises:
            ValueError: Shapes differ, or the reference holds an index >= K that is not the
                ignore index.
        """
        if prediction.shape != reference.shape:
            raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} differ in shape")
        pred = prediction.reshape(-1).astype(np.int64)
        ref = reference.reshape(-1).astype(np.int64)
        labelled = ref != self.ignore_index if self.ignore_index is not None else np.ones_like(ref, bool)
        bad = labelled & ((ref < 0) | (ref >= self.num_classes))
        if bad.any():
            raise ValueError(
                f"reference holds class index {int(ref[bad][0])} outside 0..{self.num_classes - 1}; "
                "map it to this scheme (crosswalk) or to the ignore index first"
            )
        keep = labelled & (pred >= 0) & (pred < self.num_classes)
        self._total += ref.size
        self._ignored += int(ref.size - keep.sum())
        if keep.any():
            self._cm.update(torch.from_numpy(pred[keep]), torch.from_numpy(ref[keep]))

    @property
    def matrix(self) -> np.ndarray:
        """The accumulated matrix, int64 (K, K), rows = reference, columns = prediction."""
        return self._cm.compute().numpy().astype(np.int64)

    @property
    def excluded_fraction(self) -> float:
        """Share of the pixels seen that were left out (no reference label or no prediction)."""
        return self._ignored / self._total if self._total else 0.0

    def compute(self, class_names: Sequence[str] | None = None) -> SegmentationMetrics:
        """Derive all metrics from the accumulated matrix (see the module docstring)."""
        return metrics_from_confusion(self.matrix, class_names, excluded_fraction=self.excluded_fraction)


@dataclass(frozen=True)
class SegmentationMetrics:
    """Metrics of one evaluation.

    Attributes:
        confusion: int64 (K, K), rows = reference, columns = prediction.
        class_names: K names.
        iou, precision, recall, f1: float64 (K,), NaN where undefined.
        miou: Mean IoU over the averaged classes where defined.
        overall_accuracy: OA in [0, 1].
        kappa: Cohen's kappa.
        mean_f1: Mean F1 over defined classes.
        pixels: Number of pixels compared.
        excluded_fraction: Share of pixels left out (no reference label / no prediction).
        averaged_classes: Names of the classes mIoU and mean F1 average over: all by default;
            against a crosswalked reference only those the reference scheme can express (an
            OpenStreetMap reference cannot say ``bare`` or ``snow_and_ice``, so their IoU would be 0
            by construction).
    """

    confusion: np.ndarray
    class_names: tuple[str, ...]
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    miou: float
    overall_accuracy: float
    kappa: float
    mean_f1: float
    pixels: int
    excluded_fraction: float = 0.0
    averaged_classes: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (NaN as ``None``)."""

        def clean(v: float) -> float | None:
            return None if v is None or math.isnan(v) else round(float(v), 6)

        return {
            "miou": clean(self.miou),
            "overall_accuracy": clean(self.overall_accuracy),
            "kappa": clean(self.kappa),
            "mean_f1": clean(self.mean_f1),
            "pixels": int(self.pixels),
            "excluded_fraction": clean(self.excluded_fraction),
            "miou_classes": list(self.averaged_classes if self.averaged_classes is not None else self.class_names),
            "per_class": {
                n: {
                    "iou": clean(self.iou[i]),
                    "precision": clean(self.precision[i]),
                    "recall": clean(self.recall[i]),
                    "f1": clean(self.f1[i]),
                    "reference_pixels": int(self.confusion[i].sum()),
                    "predicted_pixels": int(self.confusion[:, i].sum()),
                }
                for i, n in enumerate(self.class_names)
            },
            "confusion_matrix": self.confusion.tolist(),
        }

    def table(self) -> str:
        """Plain-text table of per-class metrics and the headline numbers."""
        w = max(12, *(len(n) for n in self.class_names)) + 2
        lines = [f"{'class':<{w}}{'IoU':>8}{'prec':>8}{'recall':>8}{'F1':>8}{'ref px':>10}"]
        for i, n in enumerate(self.class_names):
            cells = [self.iou[i], self.precision[i], self.recall[i], self.f1[i]]
            txt = "".join(f"{'-':>8}" if math.isnan(v) else f"{v:>8.3f}" for v in cells)
            lines.append(f"{n:<{w}}{txt}{int(self.confusion[i].sum()):>10}")
        lines.append(
            f"mIoU {self.miou:.4f}  OA {self.overall_accuracy:.4f}  kappa {self.kappa:.4f}  "
            f"pixels {self.pixels}  excluded {self.excluded_fraction:.1%}"
        )
        if self.averaged_classes is not None and len(self.averaged_classes) < len(self.class_names):
            lines.append(f"mIoU averages {', '.join(self.averaged_classes)} (the classes the reference can express)")
        return "\n".join(lines)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def metrics_from_confusion(
    confusion: np.ndarray, class_names: Sequence[str] | None = None, *, excluded_fraction: float = 0.0,
    averaged: Sequence[str] | None = None,
) -> SegmentationMetrics:
    """Compute IoU, mIoU, OA, precision, recall, F1 and kappa from a confusion matrix.

    Args:
        confusion: (K, K) counts, rows = reference, columns = prediction.
        class_names: K names (default ``class_0`` ...).
        excluded_fraction: Passed through to the result.
        averaged: Names of the classes mIoU and mean F1 average over (default all); the others
            keep their per-class values but do not enter the means.

    Returns:
        The metrics; see the module docstring for the formulas and their sources.

    Raises:
        ValueError: The matrix is not square.
    """
    m = np.asarray(confusion, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got {m.shape}")
    k = m.shape[0]
    names = tuple(class_names) if class_names is not None else tuple(f"class_{i}" for i in range(k))
    tp = np.diag(m)
    ref = m.sum(axis=1)
    pred = m.sum(axis=0)
    n = m.sum()
    iou = _div(tp, ref + pred - tp)
    precision = _div(tp, pred)
    recall = _div(tp, ref)
    f1 = _div(2 * tp, ref + pred)
    oa = float(tp.sum() / n) if n else float("nan")
    pe = float((ref * pred).sum() / (n * n)) if n else float("nan")
    kappa = (oa - pe) / (1 - pe) if n and pe < 1 else (1.0 if n else float("nan"))
    keep = np.ones(k, bool) if averaged is None else np.array([c in set(averaged) for c in names])
    if averaged is not None and not keep.any():
        raise ValueError(f"none of the averaged classes {list(averaged)} is among {list(names)}")
    return SegmentationMetrics(
        confusion=m.astype(np.int64),
        class_names=names,
        iou=iou,
        precision=precision,
        recall=recall,
        f1=f1,
        miou=float(np.nanmean(iou[keep])) if np.isfinite(iou[keep]).any() else float("nan"),
        overall_accuracy=oa,
        kappa=float(kappa),
        mean_f1=float(np.nanmean(f1[keep])) if np.isfinite(f1[keep]).any() else float("nan"),
        pixels=int(n),
        excluded_fraction=float(excluded_fraction),
        averaged_classes=None if averaged is None else tuple(n_ for n_ in names if n_ in set(averaged)),
    )


def class_areas(labels: np.ndarray, num_classes: int, row_area_m2: np.ndarray) -> np.ndarray:
    """Ground area of each class.

    Args:
        labels: Integer array (H, W) of class indices 0..K-1 (other values are not counted).
        num_classes: K.
        row_area_m2: (H,) area of one pixel of each row in m^2 (see ``GeoRaster.pixel_area_m2``).

    Returns:
        float64 (K,) areas in km^2.
    """
    out = np.zeros(num_classes, dtype=np.float64)
    for k in range(num_classes):
        out[k] = float(((labels == k).sum(axis=1) * row_area_m2).sum()) / 1e6
    return out
