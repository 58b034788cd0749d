"""Metric values on hand-computed confusion matrices, and agreement with torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassCohenKappa, MulticlassF1Score, MulticlassJaccardIndex

from core.evaluation.metrics import ConfusionAccumulator, class_areas, metrics_from_confusion

# rows = reference, columns = prediction
M = np.array([[50, 2, 3], [5, 30, 5], [0, 5, 100]])


def test_hand_computed_values():
    m = metrics_from_confusion(M, ["a", "b", "c"])
    # IoU_a = 50 / (55 + 55 - 50); IoU_b = 30 / (40 + 37 - 30); IoU_c = 100 / (105 + 108 - 100)
    np.testing.assert_allclose(m.iou, [50 / 60, 30 / 47, 100 / 113])
    assert m.miou == pytest.approx((50 / 60 + 30 / 47 + 100 / 113) / 3)
    assert m.overall_accuracy == pytest.approx(180 / 200)
    np.testing.assert_allclose(m.precision, [50 / 55, 30 / 37, 100 / 108])
    np.testing.assert_allclose(m.recall, [50 / 55, 30 / 40, 100 / 105])
    np.testing.assert_allclose(m.f1, [100 / 110, 60 / 77, 200 / 213])
    pe = (55 * 55 + 40 * 37 + 105 * 108) / 200**2
    assert m.kappa == pytest.approx((0.9 - pe) / (1 - pe))
    assert m.pixels == 200


def test_absent_class_is_nan_and_left_out_of_the_mean():
    m = metrics_from_confusion(np.array([[10, 0, 0], [0, 0, 0], [2, 0, 8]]))
    assert math.isnan(m.iou[1]) and m.miou == pytest.approx((10 / 12 + 8 / 10) / 2)
    d = m.to_dict()
    assert d["per_class"]["class_1"]["iou"] is None


def test_perfect_and_single_class():
    m = metrics_from_confusion(np.diag([5, 7]))
    assert m.miou == 1 and m.overall_accuracy == 1 and m.kappa == 1


def test_accumulator_ignore_index_and_nodata_prediction():
    acc = ConfusionAccumulator(3, ignore_index=255)
    ref = np.array([[0, 1, 2, 255], [2, 2, 1, 0]], np.uint8)
    pred = np.array([[0, 2, 2, 1], [255, 2, 1, 1]], np.uint8)
    acc.update(pred, ref)
    expected = np.zeros((3, 3), int)
    for p, r in [(0, 0), (2, 1), (2, 2), (2, 2), (1, 1), (1, 0)]:
        expected[r, p] += 1
    np.testing.assert_array_equal(acc.matrix, expected)
    assert acc.excluded_fraction == pytest.approx(2 / 8)


def test_accumulator_rejects_out_of_scheme_reference():
    acc = ConfusionAccumulator(3)
    with pytest.raises(ValueError, match="crosswalk"):
        acc.update(np.zeros(4, np.uint8), np.array([0, 1, 7, 2], np.uint8))


def test_matches_torchmetrics_on_random_maps():
    rng = np.random.default_rng(0)
    k = 5
    ref = rng.integers(0, k, (64, 64))
    pred = np.where(rng.random((64, 64)) < 0.7, ref, rng.integers(0, k, (64, 64)))
    ref[:5] = 255
    acc = ConfusionAccumulator(k, 255)
    acc.update(pred, ref)
    m = acc.compute()
    p, t = torch.from_numpy(pred), torch.from_numpy(ref)
    iou = MulticlassJaccardIndex(k, average="none", ignore_index=255)(p, t).numpy()
    np.testing.assert_allclose(m.iou, iou, rtol=1e-5)
    f1 = MulticlassF1Score(k, average="none", ignore_index=255)(p, t).numpy()
    np.testing.assert_allclose(m.f1, f1, rtol=1e-5)
    kappa = MulticlassCohenKappa(k, ignore_index=255)(p, t).item()
    assert m.kappa == pytest.approx(kappa, rel=1e-5)


def test_class_areas_in_km2():
    labels = np.array([[0, 0, 1], [1, 1, 255]])
    areas = class_areas(labels, 2, np.array([100.0, 200.0]))
    np.testing.assert_allclose(areas, [200 / 1e6, (100 + 400) / 1e6])


def test_table_lists_every_class():
    txt = metrics_from_confusion(M, ["water", "trees", "crops"]).table()
    assert "water" in txt and "crops" in txt and "mIoU" in txt


def test_miou_against_a_crosswalked_reference_averages_only_what_it_can_express():
    from core.classes import get_scheme
    from core.evaluation.comparison import Comparison

    cmp = Comparison("dynamic_world", "osm")
    dw, osm = get_scheme("dynamic_world"), get_scheme("osm")
    rng = np.random.default_rng(0)
    pred = rng.choice([c.id for c in dw.classes], size=(64, 64)).astype(np.uint8)
    ref = rng.choice([c.id for c in osm.classes if c.id != osm.ignore_index], size=(64, 64)).astype(np.uint8)
    cmp.add(pred, ref)
    m = cmp.metrics()
    assert "bare" not in m.averaged_classes and "snow_and_ice" not in m.averaged_classes
    keep = [m.class_names.index(n) for n in m.averaged_classes]
    assert math.isclose(m.miou, float(np.nanmean(m.iou[keep])))
    assert m.to_dict()["miou_classes"] == list(m.averaged_classes)
    same = Comparison("dynamic_world", "dynamic_world")
    same.add(pred, pred)
    assert same.metrics().averaged_classes == tuple(dw.names)


def test_exported_excluded_share_is_the_aoi_polygons():
    from affine import Affine

    from core.evaluation.comparison import compare
    from core.inference.streaming import ClassMap
    from core.io.raster import GeoRaster

    g = {"crs": None, "transform": Affine(10, 0, 0, 0, -10, 0)}
    pred = np.zeros((1, 10, 10), np.uint8)
    conf = np.ones((1, 10, 10), np.float32)
    cm = ClassMap(GeoRaster(pred, nodata=255, band_names=("class",), **g), GeoRaster(conf, nodata=0.0, band_names=("c",), **g))
    ref = np.zeros((1, 10, 10), np.uint8)
    ref[0, :2] = 255  # 20 unlabelled pixels, 10 of them inside the AOI
    aoi = np.zeros((10, 10), bool)
    aoi[1:6, :] = True  # 50 pixels
    res = compare(cm, "dynamic_world", GeoRaster(ref, nodata=255, band_names=("label",), **g), "dynamic_world", aoi)
    assert math.isclose(res.excluded_fraction, 10 / 50)
    assert math.isclose(res.metrics.to_dict()["excluded_fraction"], 10 / 50)  # what the JSON export writes
