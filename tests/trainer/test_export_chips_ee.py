"""Exported chips: nodata of batch exports, overlap-safe splits, errors that stop or are retried, the dry run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from shapely import STRtree
from shapely.geometry import box

from core.classes import NODATA_CLASS
from core.config import REPO_ROOT
from core.io.raster import GeoRaster, write_cog
from core.sources.earth_engine import (
    FLOAT_SENTINEL,
    CollectionSpec,
    EarthEngineError,
    EmptyCollectionError,
    PixelGrid,
    TransientError,
    classify_error,
)
from core.splits import ChipFootprint, chip_splits
from trainer.config import load_config
from trainer.data import load_exported_chips
from trainer.export import MANIFEST_FIELDS, ExportSettings, chip_grid, export_chips, plan_export

SETTINGS = ExportSettings(start="2021-06-01", end="2021-08-31", bands=("B2", "B3", "B4", "B8"), size=64)


class Fake:
    """Fake adapter: S2 reflectance, S1 dB, DW labels; programmable failures per point (by grid origin)."""

    def __init__(self, fail=None, empty=False):
        self.calls: list[tuple[str, PixelGrid]] = []
        self.exports: list[tuple[str, str]] = []
        self.fail = fail or {}  # chip x origin -> list of exceptions
        self.empty = empty

    def count_images(self, spec: CollectionSpec, grid: PixelGrid) -> int:
        return 0 if self.empty else 5

    def compute_pixels(self, spec: CollectionSpec, grid: PixelGrid) -> np.ndarray:
        self.calls.append((spec.collection, grid))
        queue = self.fail.get(grid.transform[2])
        if queue:
            raise queue.pop(0)
        h, w = grid.height, grid.width
        if spec.collection.startswith("COPERNICUS/S2"):
            return np.full((len(spec.bands), h, w), 800, dtype=spec.dtype)
        if spec.collection == "COPERNICUS/S1_GRD":
            return np.stack([np.full((h, w), -12.0), np.full((h, w), -19.0)]).astype(spec.dtype)
        return (np.arange(w)[None, None, :] % 9 + np.zeros((1, h, 1))).astype(spec.dtype)

    def export(self, spec, grid, name, kind, destination):
        self.exports.append((spec.collection, name))
        return f"task-{len(self.exports)}"


def _points(tmp_path, lons, lats, ids=None):
    p = tmp_path / "points.csv"
    pd.DataFrame({"id": ids or [f"p{i}" for i in range(len(lons))], "lon": lons, "lat": lats}).to_csv(p, index=False)
    return p


# --- splits -----------------------------------------------------------------------------------


def _dense_grid(n: int, step_deg: float, size: int):
    lons = 12.40 + step_deg * 1.6 * np.arange(n)  # ~1.6 km apart in both directions at 52.5 N
    lats = 52.40 + step_deg * np.arange(n)
    pts = [(f"g{i}_{j}", lo, la) for i, lo in enumerate(lons) for j, la in enumerate(lats)]
    return pts, {pid: chip_grid(lo, la, size) for pid, lo, la in pts}


def _overlaps(grids: dict, splits: dict) -> list[tuple[str, str]]:
    """(held-out chip, training chip) pairs whose footprints (UTM, exact) intersect or touch."""
    boxes = {}
    for pid, g in grids.items():
        a, _, c, _, e, f = g.transform
        boxes[pid] = box(c, f + e * g.height, c + a * g.width, f)
    train = [p for p, s in splits.items() if s == "train"]
    tree = STRtree([boxes[t] for t in train])
    bad = []
    for p, s in splits.items():
        if s in ("val", "test"):
            bad += [(p, train[int(i)]) for i in tree.query(boxes[p], predicate="intersects")]
    return bad


def test_dense_point_grid_no_held_out_pixel_under_a_training_chip():
    pts, grids = _dense_grid(24, 0.0144, 224)  # 224 px = 2.24 km chips, points ~1.6 km apart: every chip overlaps its neighbours
    chips = [ChipFootprint(pid, g.crs, g.affine, g.width, g.height) for pid, g in grids.items()]
    splits = chip_splits(chips, cell_deg=0.1, val=0.2, test=0.2, seed=7)
    kept = {p: s for p, s in splits.items() if s is not None}
    assert _overlaps(grids, kept) == []
    held = {s for s in kept.values()}
    assert held == {"train", "val", "test"}, "all three splits are present on a 38 x 38 km grid"
    assert len(kept) > 0.65 * len(pts), "the buffer along cell edges leaves most chips in use"
    # val and test do not touch either
    vt = {p: ("train" if s == "val" else s) for p, s in kept.items() if s in ("val", "test")}
    assert _overlaps(grids, vt) == []


def test_isolated_groups_stay_whole_across_a_cell_edge():
    # two overlapping chips on either side of the 12.5 E cell edge, far from anything else
    pts = [("a", 12.4995, 52.45), ("b", 12.5005, 52.45), ("far", 13.55, 52.45)]
    chips = [ChipFootprint(p, g.crs, g.affine, g.width, g.height) for p, g in ((p, chip_grid(lo, la, 224)) for p, lo, la in pts)]
    for seed in range(20):
        s = chip_splits(chips, cell_deg=0.1, val=0.3, test=0.3, seed=seed)
        assert s["a"] == s["b"] is not None


def _write_chip(folder, pid, grid, image, bands, label, *, nodata=None, label_nodata=None, s1=None):
    crs = grid.crs
    write_cog(GeoRaster(image, crs, grid.affine, nodata, bands), folder / f"{pid}.tif")
    write_cog(GeoRaster(label[None].astype(np.uint8), crs, grid.affine, label_nodata, ("label",)), folder / f"{pid}_label.tif")
    if s1 is not None:
        write_cog(GeoRaster(s1.astype(np.float32), crs, grid.affine, None, ("VV", "VH")), folder / f"{pid}_s1.tif")


def _manifest(folder, rows):
    full = [{**dict.fromkeys(MANIFEST_FIELDS, ""), **r} for r in rows]
    pd.DataFrame(full, columns=MANIFEST_FIELDS).to_csv(folder / "manifest.csv", index=False)


def _cfg(folder, bands="[B4, B8]", extra=()):
    return load_config(REPO_ROOT / "tests" / "trainer" / "smoke.yaml",
                       [f"data.chips_dir={folder}", "data.scenes=[]", f"data.bands={bands}", *extra])


def test_loader_splits_a_dense_grid_without_overlap(tmp_path):
    size = 32  # 320 m chips, points ~200-350 m apart
    pts, grids = _dense_grid(6, 0.0025, size)
    rng = np.random.default_rng(0)
    rows = []
    for pid, lo, la in pts:
        img = rng.integers(300, 3000, (2, size, size)).astype(np.uint16)
        _write_chip(tmp_path, pid, grids[pid], img, ("B4", "B8"), rng.integers(0, 9, (size, size)), nodata=0, label_nodata=255)
        rows.append({"id": pid, "lon": lo, "lat": la, "status": "ok", "image": f"{pid}.tif", "label": f"{pid}_label.tif",
                     "scheme": "dynamic_world", "crs": grids[pid].crs, "level": "L1C", "max_nodata": 0.1})
    _manifest(tmp_path, rows)
    scenes, _ = load_exported_chips(_cfg(tmp_path, extra=["data.chips_cell_deg=0.01", "data.val_fraction=0.25",
                                                           "data.test_fraction=0.25"]))
    splits = {s.id.removeprefix("chip:"): s.blocks[0].split for s in scenes}
    assert {"train", "test"} <= set(splits.values())
    assert _overlaps({p: grids[p] for p in splits}, splits) == [], "a test chip overlaps a training chip"


# --- nodata of batch exports --------------------------------------------------------------------


def test_batch_export_declares_fills_and_records_them(tmp_path):
    fake = Fake()
    m = export_chips(fake, _points(tmp_path, [12.55, 12.65], [52.47, 52.50]), tmp_path / "b", SETTINGS, batch="gcs",
                     destination="bucket")
    assert set(m.status) == {"submitted"} and len(fake.exports) == 6
    r = m.iloc[0]
    assert r.level == "L1C" and float(r.image_nodata) == 0 and float(r.s1_nodata) == FLOAT_SENTINEL
    assert float(r.label_nodata) == 255 and r.max_nodata == pytest.approx(0.1)


def test_loader_masks_batch_fills_and_applies_max_nodata_to_every_chip(tmp_path):
    g = chip_grid(12.55, 52.47, 64)
    g2 = chip_grid(12.95, 52.47, 64)
    img = np.full((2, 64, 64), 900, np.uint16)
    img[:, :3] = 0  # 3 rows of S2 fill (cloud-masked in the export): 4.7 %
    s1 = np.stack([np.full((64, 64), -11.0), np.full((64, 64), -18.0)])
    s1[:, :, :1] = FLOAT_SENTINEL  # one column of S1 fill
    lab = np.full((64, 64), 3)
    lab[-1] = 255  # last row unlabelled
    # no nodata tags: as a batch export of the old code wrote them
    _write_chip(tmp_path, "a", g, img, ("B4", "B8"), lab, s1=s1)
    cloudy = img.copy()
    cloudy[:, :40] = 0  # 62 % fill
    _write_chip(tmp_path, "cloudy", g2, cloudy, ("B4", "B8"), lab, s1=s1)
    common = {"status": "submitted", "scheme": "dynamic_world", "level": "L2A", "image_nodata": "0.0", "s1_nodata": "-9999.0",
              "label_nodata": "255", "max_nodata": 0.2, "lat": 52.47}
    _manifest(tmp_path, [{**common, "id": "a", "lon": 12.55, "image": "a.tif", "label": "a_label.tif"},
                         {**common, "id": "cloudy", "lon": 12.95, "image": "cloudy.tif", "label": "cloudy_label.tif"}])
    scenes, _ = load_exported_chips(_cfg(tmp_path, bands="[B4, B8, VV, VH]"))
    assert [s.id for s in scenes] == ["chip:a"], "the cloudy submitted chip is over max_nodata"
    s = scenes[0]
    assert np.isnan(s.image[:, :3]).all() and np.isnan(s.image[:, :, 0]).all() and not np.isnan(s.image[:, 3:, 1:]).any()
    assert (s.image[2][~np.isnan(s.image[2])] == -11.0).all(), "no -9999 dB left"
    assert (s.target[:3] == NODATA_CLASS).all() and (s.target[-1] == NODATA_CLASS).all() and (s.target[3:-1, 1:] != NODATA_CLASS).all()


def test_old_manifest_without_fill_columns_uses_the_export_fills(tmp_path):
    g = chip_grid(12.55, 52.47, 64)
    img = np.full((2, 64, 64), 900, np.uint16)
    img[:, :2] = 0
    _write_chip(tmp_path, "a", g, img, ("B4", "B8"), np.full((64, 64), 2))
    pd.DataFrame([{"id": "a", "lon": 12.55, "lat": 52.47, "region": "", "status": "submitted", "reason": "", "image": "a.tif",
                   "label": "a_label.tif", "scheme": "dynamic_world", "crs": g.crs, "nodata_fraction": ""}]).to_csv(
        tmp_path / "manifest.csv", index=False)
    (s,) = load_exported_chips(_cfg(tmp_path))[0]
    assert np.isnan(s.image[:, :2]).all() and (s.target[:2] == NODATA_CLASS).all()


# --- errors -------------------------------------------------------------------------------------


def test_transient_failure_is_not_marked_done_and_is_retried(tmp_path, monkeypatch):
    slept = []
    monkeypatch.setattr("time.sleep", slept.append)  # download's backoff
    pts = _points(tmp_path, [12.55, 12.65], [52.47, 52.50])
    x0 = chip_grid(12.55, 52.47, 64).transform[2]
    fake = Fake(fail={x0: [TransientError("Earth Engine is busy (HTTP 503)")] * 5})
    m = export_chips(fake, pts, tmp_path / "o", SETTINGS)
    assert dict(zip(m.id, m.status, strict=True)) == {"p0": "retry", "p1": "ok"}
    assert slept == [1.0, 2.0, 4.0, 8.0], "retried with exponential backoff before giving up"
    again = Fake()
    m = export_chips(again, pts, tmp_path / "o", SETTINGS)
    assert dict(zip(m.id, m.status, strict=True)) == {"p0": "ok", "p1": "ok"} and again.calls
    assert {g.transform[2] for _, g in again.calls} == {x0}, "only the failed point is fetched again"


def test_permanent_failure_stops_at_once_and_names_the_point(tmp_path):
    pts = _points(tmp_path, [12.55, 12.65, 12.75], [52.47, 52.50, 52.52])
    x1 = chip_grid(12.65, 52.50, 64).transform[2]
    err = classify_error("Total request size (56623104 bytes) must be less than or equal to 50331648 bytes.")
    assert not isinstance(err, TransientError)
    fake = Fake(fail={x1: [err] * 10})
    with pytest.raises(EarthEngineError, match="point p1") as e:
        export_chips(fake, pts, tmp_path / "o", SETTINGS)
    assert not isinstance(e.value, TransientError)
    assert sum(g.transform[2] == x1 for _, g in fake.calls) == 1, "a permanent error is not retried"
    m = pd.read_csv(tmp_path / "o" / "manifest.csv")
    assert list(m.id) == ["p0"], "what was done stays; the failed point is not recorded as done"


def test_empty_collection_is_skipped_with_the_reason(tmp_path):
    m = export_chips(Fake(empty=True), _points(tmp_path, [12.55], [52.47]), tmp_path / "o", SETTINGS)
    assert m.status.iloc[0] == "skipped"
    reason = m.reason.iloc[0]
    assert "2021-06-01 and 2021-08-31" in reason and "west 12." in reason and "Cloud Score+" in reason
    with pytest.raises(EmptyCollectionError):
        raise EmptyCollectionError(reason)


# --- dry run ------------------------------------------------------------------------------------


def test_plan_export_lists_requests_without_an_adapter(tmp_path):
    pts = _points(tmp_path, [12.55, 12.65], [52.47, 52.50])
    plan = plan_export(pts, tmp_path / "o", ExportSettings(start="2021-06-01", end="2021-06-01"))
    assert plan["points"] == plan["todo"] == 2
    assert [p["collection"] for p in plan["products"]] == ["COPERNICUS/S2_HARMONIZED", "COPERNICUS/S1_GRD", "GOOGLE/DYNAMICWORLD/V1"]
    assert plan["products"][0]["dates"]["filterDate"] == ["2021-06-01", "2021-06-02"]
    first = plan["chips"][0]["requests"][0]
    assert first["tiles"] == 1 and first["first_tile_request"]["grid"]["dimensions"] == {"width": 224, "height": 224}
    # bytes: 224 x 224 x (6 bands uint16 + 2 bands float32 + 1 band uint8) per point
    assert plan["bytes"] == 2 * 224 * 224 * (6 * 2 + 2 * 4 + 1)
    assert plan["requests"] == 2 * 3 * 2  # per point and product: one image count, one tile
    batch = plan_export(pts, tmp_path / "o", ExportSettings(start="2021-06-01", end="2021-06-01"), batch="drive", destination="f")
    assert batch["requests"] == 6 and batch["chips"][0]["requests"][1]["formatOptions"] == {"noData": FLOAT_SENTINEL}
