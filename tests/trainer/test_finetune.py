"""``python -m trainer finetune``: a corrected bundle that ``predict`` runs, with the user's classes; bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import xy
from rasterio.warp import transform as warp

from trainer.cli import main


def _points_csv(tif, path, rows, cols, names):
    with rasterio.open(tif) as ds:
        xs, ys = xy(ds.transform, rows, cols)
        lon, lat = warp(ds.crs, "EPSG:4326", list(xs), list(ys))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lon", "lat", "class"])
        for a, b, c in zip(lon, lat, names, strict=True):
            w.writerow([f"{a:.9f}", f"{b:.9f}", c])
    return path


def test_finetune_writes_a_bundle_predict_runs(small_tif, tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(10, 90, 40), rng.integers(10, 150, 40)
    names = ["left" if c < 80 else "right" for c in cols]
    pts = _points_csv(small_tif, tmp_path / "p.csv", rows, cols, names)
    out = tmp_path / "my-region"
    assert main(["finetune", "--checkpoint", "models/default", "--input", str(small_tif), "--points", str(pts), "--output", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert [c["name"] for c in card["classes"]["classes"]] == ["left", "right"]
    corr = card["training"]["correction"]
    assert corr["points_per_class"] == {"left": names.count("left"), "right": names.count("right")} and len(corr["base_sha256"]) == 64
    assert corr["priors"] == "em:dynamicworld"  # classes of the user's own: priors by EM on the Dynamic World port's features
    assert main(["predict", "--checkpoint", str(out), "--input", str(small_tif), "--output", str(tmp_path / "m.tif")]) == 0
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert set(np.unique(ds.read(1))) <= {0, 1, 255}
    # a corrected bundle can be corrected again
    assert main(["finetune", "--checkpoint", str(out), "--input", str(small_tif), "--points", str(pts), "--output", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "card.json").read_text())["training"]["correction"]
    assert again["rounds"] == 2 and again["priors"] == "replay"  # its own classes now: replay of its map


@pytest.mark.parametrize(("rows", "names", "message"), [
    ([20, 30, 40], ["a", "a", "a"], "one class"),
    ([20, 30, 40], ["a", "a", "b"], "only one point"),
    ([2, 30, 40, 50], ["a", "a", "b", "b"], "without data"),
])
def test_finetune_bad_points_one_line(small_tif, tmp_path, capsys, rows, names, message):
    pts = _points_csv(small_tif, tmp_path / "p.csv", rows, [3] + [60] * (len(rows) - 1), names)
    out = tmp_path / "b"
    assert main(["finetune", "--checkpoint", "models/default", "--input", str(small_tif), "--points", str(pts), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (out / "card.json").exists()


def test_finetune_from_a_geopackage_in_the_image_crs(small_tif, tmp_path):
    from core.correction.points import PointSet, write_points_gpkg

    rng = np.random.default_rng(1)
    rows, cols = rng.integers(10, 90, 30), rng.integers(10, 150, 30)
    with rasterio.open(small_tif) as ds:
        xs, ys = xy(ds.transform, rows, cols)
        crs = ds.crs.to_string()
    names = tuple("water" if c < 80 else "farm" for c in cols)
    gpkg = write_points_gpkg(PointSet(np.asarray(xs), np.asarray(ys), names, crs), tmp_path / "p.gpkg")
    out = tmp_path / "g"
    assert main(["finetune", "--checkpoint", "models/default", "--input", str(small_tif), "--points", str(gpkg), "--output", str(out)]) == 0
    classes = json.loads((out / "card.json").read_text())["classes"]["classes"]
    assert {c["name"] for c in classes} == {"water", "farm"}
    assert next(c["color"] for c in classes if c["name"] == "water") == "#419bdf"  # the built-in class's colour


def test_finetune_merge_as_the_app_does_and_a_bad_merge(small_tif, tmp_path, capsys):
    rng = np.random.default_rng(2)
    rows, cols = rng.integers(10, 90, 45), rng.integers(10, 150, 45)
    names = ["left" if c < 60 else "mid" if c < 100 else "right" for c in cols]
    pts = _points_csv(small_tif, tmp_path / "p.csv", rows, cols, names)
    out = tmp_path / "merged"
    args = ["finetune", "--checkpoint", "models/default", "--input", str(small_tif), "--points", str(pts), "--output", str(out)]
    assert main([*args, "--merge", "mid=left"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert sorted(c["name"] for c in card["classes"]["classes"]) == ["left", "right"]  # order of appearance
    corr = card["training"]["correction"]
    assert corr["merges"] == {"mid": "left"} and corr["points_per_class"]["left"] == names.count("left") + names.count("mid")
    capsys.readouterr()
    assert main([*args[:-1], str(tmp_path / "bad"), "--merge", "mid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FROM=INTO" in err[0] and not (tmp_path / "bad").exists()
