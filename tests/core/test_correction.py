"""Correction core: the head, replay, undo, points I/O and bad input (synthetic features, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from core.correction import CorrectionError
from core.correction.head import fit_head
from core.correction.points import PointSet, read_points, to_pixels, write_points_csv, write_points_gpkg
from core.correction.session import CorrectionSession, FeatureCache, fit_correction, suggest_points


def _cache(h: int = 60, w: int = 80, seed: int = 0) -> FeatureCache:
    """Two features; the base model says class 0 where f0 < 0, class 1 elsewhere, class 2 never."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(2, h, w)).astype(np.float32)
    p1 = 1 / (1 + np.exp(-4 * f[0]))
    probs = np.stack([1 - p1, p1, np.full_like(p1, 1e-3)]).astype(np.float32)
    probs /= probs.sum(0)
    feats = np.concatenate([f, np.log(probs)]).astype(np.float32)
    return FeatureCache(feats, probs, np.ones((h, w), bool), ("a", "b", "c"))


def test_head_recovers_known_rule():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 3))
    y = np.where(x[:, 2] > 1.2, 2, (x[:, 0] + 2 * x[:, 1] > 0).astype(int))
    head = fit_head(x, y, 3, l2=1e-4, steps=800)
    xt = rng.normal(size=(2000, 3))
    yt = np.where(xt[:, 2] > 1.2, 2, (xt[:, 0] + 2 * xt[:, 1] > 0).astype(int))
    assert (head.predict_proba(xt).argmax(1) == yt).mean() > 0.93


def test_replay_keeps_untouched_classes_and_undo_restores():
    cache = _cache()
    f1 = cache.features[1]
    # the user says: where f1 > 1.0 (inside the base's class "b"), the class is "c"; class "a" is never touched
    rr, cc = np.nonzero(f1 > 1.0)
    rb, cb = np.nonzero((f1 < 0) & (cache.features[0] > 0.5))
    rows, cols = np.r_[rr[:40], rb[:40]], np.r_[cc[:40], cb[:40]]
    names = ["c"] * 40 + ["b"] * 40
    s = CorrectionSession(cache, classes=("a", "b", "c"))
    first = s.fit(rows, cols, names, l2=1e-3)
    assert first.classes == ("a", "b", "c")
    m1 = s.class_map()
    base = cache.base_probs.argmax(0)
    assert ((m1 == 0) == (base == 0)).mean() > 0.9  # "a" keeps its extent through replay
    assert (m1[f1 > 1.3] == 2).mean() > 0.8
    assert first.replay_map == {"a": "a", "b": "b", "c": "c"}
    s.fit(np.r_[rows, rb[40:60]], np.r_[cols, cb[40:60]], names + ["a"] * 20)
    s.undo()
    assert s.current is first and np.array_equal(s.class_map(), m1)
    assert set(first.agreement) == {"a", "b", "c", "all"}
    r, c = s.suggest(10)
    assert len(r) == 10 and len({(a // 16, b // 16) for a, b in zip(r, c, strict=True)}) == 10


def test_same_seed_same_head():
    cache = _cache()
    rows, cols = np.arange(0, 40), np.arange(0, 40)
    names = ["x" if cache.features[0][r, c] < 0 else "y" for r, c in zip(rows, cols, strict=True)]
    a = fit_correction(cache, rows, cols, names, seed=3)
    b = fit_correction(cache, rows, cols, names, seed=3)
    assert np.array_equal(a.head.weight, b.head.weight) and set(a.classes) == {"x", "y"}


@pytest.mark.parametrize(("names", "where", "message"), [
    (["a"] * 5, None, "one class"),
    (["a"] * 4 + ["b"], None, "only one point"),
    (["a", "a", "b", "b", "zz"], None, "not among the classes"),
    (["a", "a", "b", "b", "b"], "nodata", "without data"),
])
def test_bad_points(names, where, message):
    cache = _cache()
    if where == "nodata":
        valid = cache.valid.copy()
        valid[0, 0] = False
        cache = FeatureCache(cache.features, cache.base_probs, valid, cache.base_names)
    with pytest.raises(CorrectionError, match=message):
        fit_correction(cache, np.zeros(len(names), int), np.arange(len(names)), names,
                       classes=("a", "b", "c") if "zz" in names else None)


def test_suggest_min_margin():
    p = np.full((2, 32, 32), 0.5, np.float32)
    p[0] = 0.9
    p[1] = 0.1
    p[:, 3, 4] = 0.5
    r, c = suggest_points(p, np.ones((32, 32), bool), 1)
    assert (r[0], c[0]) == (3, 4)


def test_points_round_trip_other_crs(tmp_path):
    tr = Affine(10.0, 0, 330000.0, 0, -10.0, 5822040.0)
    rows, cols = np.array([3, 10, 50]), np.array([7, 40, 90])
    from rasterio.transform import xy

    xs, ys = xy(tr, rows, cols)
    pts = PointSet(np.asarray(xs), np.asarray(ys), ("water", "forest", "water"), "EPSG:32633")
    gpkg = write_points_gpkg(pts, tmp_path / "p.gpkg")
    back = read_points(gpkg)
    assert back.names == pts.names and "32633" in str(CRS.from_user_input(back.crs).to_epsg())
    assert np.array_equal(to_pixels(back, CRS.from_epsg(32633), tr, 100, 100)[0], rows)
    csv = write_points_csv(back, tmp_path / "p.csv")
    r2, c2 = to_pixels(read_points(csv), CRS.from_epsg(32633), tr, 100, 100)
    assert np.array_equal(r2, rows) and np.array_equal(c2, cols)
    with pytest.raises(CorrectionError, match="outside the raster"):
        to_pixels(read_points(csv), CRS.from_epsg(32633), tr, 20, 20)


@pytest.mark.parametrize(("text", "message"), [
    ("lon,lat,kind\n1,2,a\n", "no class column"),
    ("lon,lat,class\nx,2,a\n", "not a number"),
    ("lon,lat,class\n", "no points"),
    ("x,y,class\n1,2,a\n", "needs the columns"),
])
def test_bad_csv(tmp_path, text, message):
    p = tmp_path / "p.csv"
    p.write_text(text)
    with pytest.raises(CorrectionError, match=message):
        read_points(p)


def test_corrupt_gpkg_and_too_many(tmp_path):
    bad = tmp_path / "p.gpkg"
    bad.write_bytes(b"not a geopackage")
    with pytest.raises(CorrectionError, match="not a readable GeoPackage"):
        read_points(bad)
    many = tmp_path / "m.csv"
    many.write_text("lon,lat,class\n" + "1,2,a\n" * 10_001)
    with pytest.raises(CorrectionError, match="more than the 10000"):
        read_points(many)
