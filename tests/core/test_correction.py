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


def test_merge_replays_the_merged_base_class_as_the_class_it_joins():
    cache = _cache()
    base = cache.base_probs.argmax(0)
    f1 = cache.features[1]
    rb, cb = np.nonzero((base == 1) & (f1 < 0))
    ra, ca = np.nonzero(base == 0)
    rc, cc = np.nonzero(f1 > 1.0)
    rows, cols = np.r_[rb[:20], ra[:20], rc[:20]], np.r_[cb[:20], ca[:20], cc[:20]]
    names = ["b"] * 20 + ["a"] * 20 + ["c"] * 20  # "a" points are taken as "b" once "a" is merged into "b"
    s = CorrectionSession(cache, merges={"a": "b"})
    rnd = s.fit(rows, cols, names, seed=1)
    assert rnd.classes == ("b", "c") and rnd.replay_map == {"a": "b", "b": "b", "c": "c"}
    assert rnd.points_per_class == {"b": 40, "c": 20}
    m = s.class_map()
    assert (m[base == 0] == 0).mean() > 0.95  # the former "a" pixels are now "b" (index 0 of the new classes)


def test_card_fields_colours_and_replay_head(tmp_path):
    from core.correction.card import card_fields, class_colors, file_sha256, replay_head

    cache = _cache()
    rows, cols = np.arange(0, 40), np.arange(0, 40)
    names = ["x" if cache.features[0][r, c] < 0 else "water" for r, c in zip(rows, cols, strict=True)]
    rnd = fit_correction(cache, rows, cols, names, seed=0)
    weights = tmp_path / "base" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"abc")
    classes, corr = card_fields(rnd, name="mine", base_bundle=weights.parent, base_class_names=("a", "b", "c"), base_temperature=1.5,
                                base_training={"correction": {"rounds": 2}}, rounds=1, colors={"x": "#123456"}, merges={"c": "b"})
    assert [c["name"] for c in classes["classes"]] == list(rnd.classes) and classes["name"] == "corrected_mine"
    col = {c["name"]: c["color"] for c in classes["classes"]}
    assert col["x"] == "#123456" and col["water"] == class_colors(("water",))["water"] == "#419bdf"
    assert corr["rounds"] == 3 and corr["merges"] == {"c": "b"} and corr["base_temperature"] == 1.5
    assert corr["base_sha256"] == file_sha256(weights) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    # a head that is the identity on the log-probabilities replays the base map exactly
    k0, f = 3, cache.features.shape[0]
    w = np.zeros((k0, f), np.float32)
    w[:, f - k0:] = np.eye(k0)
    again = replay_head(cache, w, np.zeros(k0, np.float32), ("a", "b", "c"))
    assert np.allclose(again.base_probs, cache.base_probs, atol=1e-5)
    with pytest.raises(ValueError, match="inputs"):
        replay_head(cache, w[:, :2], np.zeros(k0), ("a", "b", "c"))


def test_gpkg_with_polygons_layer_reads_back_the_points(tmp_path):
    import pyogrio
    from shapely.geometry import box

    pts = PointSet(np.array([12.5, 12.6]), np.array([52.4, 52.5]), ("water", "farm"))
    path = write_points_gpkg(pts, tmp_path / "c.gpkg", colors={"water": "#419bdf"}, round_no=[1, 2], times=["t1", "t2"],
                             polygons=[{"geometry": box(12.5, 52.4, 12.6, 52.5), "class": "farm", "round": 2, "time": "t3"}])
    assert [n for n, _ in pyogrio.list_layers(path)] == ["corrections", "polygons"]
    back = read_points(path)
    assert back.names == ("water", "farm")
    meta, _, geoms, fields = pyogrio.raw.read(path, layer="polygons")
    assert list(meta["fields"]) == ["class", "class_id", "color", "round", "time"] and list(fields[0]) == ["farm"]
    assert list(fields[3]) == [2] and list(fields[4]) == ["t3"] and len(geoms) == 1
    _, _, _, pf = pyogrio.raw.read(path, layer="corrections")
    assert list(pf[2]) == ["#419bdf", ""] and list(pf[3]) == [1, 2] and list(pf[4]) == ["t1", "t2"]


def test_em_prior_recovers_the_class_shares_of_a_shifted_scene():
    """A calibrated classifier trained at 50/50 scores a scene that is 80/20: EM (Saerens et al. 2002) finds 0.8/0.2."""
    from core.correction.session import em_prior

    rng = np.random.default_rng(0)
    y = rng.random(20_000) < 0.2  # class 1 on 20 % of the scene
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    p1 = 1 / (1 + np.exp(-2 * x))  # the exact posterior under equal priors for N(+-1, 1)
    prior = em_prior(np.stack([1 - p1, p1], axis=1), np.array([0.5, 0.5]))
    assert abs(prior[1] - 0.2) < 0.02 and abs(prior.sum() - 1) < 1e-6


def _small_class_cache(h: int = 120, w: int = 120) -> FeatureCache:
    """The base says "a" where f0 < -1 (16 % of the pixels), "b" elsewhere, "c" never."""
    f = np.random.default_rng(0).normal(size=(2, h, w)).astype(np.float32)
    pa = 1 / (1 + np.exp(-4 * (-1.0 - f[0])))
    probs = np.stack([pa, 1 - pa, np.full_like(pa, 1e-3)]).astype(np.float32)
    probs /= probs.sum(0)
    return FeatureCache(np.concatenate([f, np.log(probs)]).astype(np.float32), probs, np.ones((h, w), bool), ("a", "b", "c"))


def test_untouched_small_class_keeps_its_extent_next_to_labelled_classes():
    """Points of "b" and "c" only (none in "a"): the untouched-class replay keeps "a"; uniform replay alone loses ~45 % of it."""
    cache = _small_class_cache()
    f0, f1 = cache.features[0], cache.features[1]
    rng = np.random.default_rng(0)
    rb, cb = np.nonzero((f0 > -1) & (f1 < 1))
    rc, cc = np.nonzero((f0 > -1) & (f1 >= 1))
    pb, pc = rng.choice(rb.size, 100, replace=False), rng.choice(rc.size, 100, replace=False)
    rows, cols, names = np.r_[rb[pb], rc[pc]], np.r_[cb[pb], cc[pc]], ["b"] * 100 + ["c"] * 100
    base_a = cache.base_probs.argmax(0) == 0
    kept = {}
    for per_class in (0, 200):
        rnd = fit_correction(cache, rows, cols, names, classes=("a", "b", "c"), untouched_replay=per_class)
        kept[per_class] = (rnd.head.predict_map(cache.features).argmax(0)[base_a] == 0).mean()
    assert kept[200] > 0.85 and kept[0] < 0.75


def test_base_precision_from_the_points_that_land_on_a_base_class():
    """Half of class 0's points lie on base class 2 (25 % of the map): 2 has precision 1 - 0.5 * 0.5 / 0.25 = 0; a quarter: 0.5."""
    from core.correction.session import base_precision

    base_at = np.array([0, 2, 0, 2, 1, 1, 1, 1])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    prec = base_precision(base_at, labels, base_area=np.array([0.5, 0.25, 0.25]), class_area=np.array([0.5, 0.5]))
    assert prec[2] == 0.0 and prec[1] == 0.0  # base class 1 is all taken by class 1's own points: only untouched classes are asked
    prec = base_precision(np.array([0, 0, 2, 0, 1, 1]), np.array([0, 0, 0, 0, 1, 1]), np.array([0.5, 0.25, 0.25]), np.array([0.5, 0.5]))
    assert abs(prec[2] - 0.5) < 1e-9


def _own_class_scene(h: int = 80, w: int = 80, seed: int = 1):
    """Own classes ``meadow`` (80 % of the pixels) and ``heath`` (20 %) that the base's features do not see
    (pure noise) and a second network's features do (class + small noise); 20 points of each class."""
    from core.correction.cache import with_prior_features

    rng = np.random.default_rng(seed)
    truth = (rng.random((h, w)) < 0.2).astype(int)  # 1 = heath
    base = _cache(h, w, seed)
    prior_feats = np.stack([truth + rng.normal(0, 0.2, (h, w)), rng.normal(0, 1, (h, w))]).astype(np.float32)
    prior = FeatureCache(prior_feats, base.base_probs, np.ones((h, w), bool), base.base_names)
    flat = np.concatenate([rng.choice(np.flatnonzero(truth.ravel() == k), 20, replace=False) for k in (0, 1)])
    names = ["meadow"] * 20 + ["heath"] * 20
    return base, with_prior_features(base, prior, "port"), flat // w, flat % w, names, truth


def test_own_class_priors_come_from_the_second_networks_features():
    """EM on the second network's features finds the scene's 80/20 shares, so the map is mostly meadow; the head
    alone (noise features) cannot tell and splits the scene about evenly."""
    base, with_port, rows, cols, names, truth = _own_class_scene()
    shares = {}
    for key, cache in (("head", base), ("port", with_port)):
        rnd = fit_correction(cache, rows, cols, names, hold_back=0.0)
        shares[key] = float((rnd.head.predict_map(cache.features).argmax(axis=0) == rnd.classes.index("meadow")).mean())
        assert rnd.priors == f"em:{key}"
    assert shares["port"] > 0.75 and shares["port"] - shares["head"] > 0.15, shares


def test_own_class_priors_fall_back_to_the_head_where_the_second_network_has_no_data():
    from core.correction.cache import with_prior_features

    _, with_port, rows, cols, names, _ = _own_class_scene()
    pf = with_port.prior_features.copy()
    pf[:, rows[0], cols[0]] = np.nan  # a point where the port has no data
    cache = FeatureCache(with_port.features, with_port.base_probs, with_port.valid, with_port.base_names, pf, "port")
    rnd = fit_correction(cache, rows, cols, names, hold_back=0.0)
    assert rnd.priors == "em:head" and np.isfinite(rnd.head.bias).all()
    # labels in the base classes: replay, the second network is not used
    assert fit_correction(with_port, rows, cols, ["a"] * 20 + ["b"] * 20, hold_back=0.0).priors == "replay"
    with pytest.raises(ValueError, match="grid"):
        with_prior_features(with_port, _cache(10, 10), "port")
