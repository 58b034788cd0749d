"""Issue 19: the sampling design honours its minimum per mapped class, or says which classes are too small for it."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import AssessmentError
from core.evaluation.accuracy import allocate, design_sample, sample_size, stratified_sample


def test_a_stratum_smaller_than_the_minimum_gets_all_its_pixels_and_the_rest_keeps_the_total():
    counts = [90_000, 8_000, 2, 1_998]
    per = allocate(600, counts, min_per_class=50, capacity=counts)
    assert per[2] == 2  # every pixel of the 2-pixel class, not a made-up 50
    assert (per[[0, 1, 3]] >= 50).all()
    assert per.sum() == 600  # the 48 points the small class cannot take go to the others
    assert per[0] > per[1] > per[3]  # by area
    assert (per <= np.asarray(counts)).all()


def test_without_capacity_the_allocation_is_unchanged_and_capacity_caps_the_total():
    w = [0.02, 0.015, 0.32, 0.645]
    assert allocate(641, w, 75).tolist() == allocate(641, w, 75, capacity=[10**9] * 4).tolist()
    assert allocate(100, [5, 3, 0], 60, capacity=[5, 3, 0]).tolist() == [5, 3, 0]  # fewer pixels than points in all
    assert allocate(200, [100, 100, 0], 60, capacity=[100, 100, 0]).tolist() == [100, 100, 0]
    with pytest.raises(AssessmentError, match="one capacity"):
        allocate(100, [1, 1], 10, capacity=[1])


def test_design_names_the_classes_below_the_minimum_and_draws_exactly_its_points():
    m = np.zeros((100, 100), np.uint8)
    m[:20] = 1
    m[50, 50] = m[60, 60] = 2  # a rare class: 2 mapped pixels (shrub_and_scrub of issue 19)
    m[:, :1] = 255
    d = design_sample(m, ["a", "b", "shrub_and_scrub", "d"], users_accuracy=0.8, target_se=0.01, min_per_class=50)
    assert d.mapped_pixels.tolist() == [7918, 1980, 2, 0]
    assert d.per_class[2] == 2 and d.per_class[3] == 0 and (d.per_class[:2] >= 50).all()
    assert d.per_class.sum() == d.n_total == sample_size([7918, 1980, 2], [0.8] * 3, 0.01)
    assert d.census == ["shrub_and_scrub"]
    note = d.note()
    assert "except shrub_and_scrub (2 px)" in note and "fewer mapped pixels than the minimum" in note
    assert d.table()["all_pixels"].tolist() == [False, False, True, False]
    _, _, cls = stratified_sample(m, d.per_class, 0)
    assert np.bincount(cls, minlength=4).tolist() == d.per_class.tolist()


def test_design_says_when_the_minimums_exceed_the_eq13_sample_size():
    m = np.zeros((100, 100), np.uint8)
    m[:30] = 1
    d = design_sample(m, ["a", "b"], users_accuracy=0.9, target_se=0.05, min_per_class=50)
    assert d.n_total < 100 and d.per_class.tolist() == [50, 50]
    assert d.census == [] and "more than the" in d.note() and "at least 50 in every mapped class." in d.note()
