"""The Correct page with AppTest on a small scene (Slovenia, 101 x 100 px): points, retrain, undo, checkpoints, export,
bad input; and ``finetune`` from the saved corrections CSV reproduces the page's bundle."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import rasterio

from app import correction
from tests.app.conftest import goto, run_scene

SCENE = "slovenia-2015-08-20"


def _open(app):
    run_scene(app, SCENE)
    goto(app, "correct")
    assert not app.error, [e.value for e in app.error]
    return app.session_state[correction.KEY]


def _latlon(work, r: int, c: int) -> tuple[float, float]:
    lon, lat = correction._centres(work, np.array([r]), np.array([c]))
    return float(lat[0]), float(lon[0])


def _type_point(app, work, r: int, c: int, cls: str):
    if app.selectbox(key="correct_class").value != cls:
        app.selectbox(key="correct_class").set_value(cls).run()
    lat, lon = _latlon(work, r, c)
    app.text_input(key="correct_latlon").set_value(f"{lat:.7f}, {lon:.7f}").run()
    app.button(key="correct_add_point").click().run()
    assert not app.exception, [e.value for e in app.exception]


def _pixels(work, cls: str, k: int, skip: int = 0) -> list[tuple[int, int]]:
    """k pixels (spread out) that the base model maps as ``cls``."""
    base = work.checkpoints[0]
    rr, cc = np.nonzero(base.labels == base.classes.index(cls))
    idx = np.linspace(0, rr.size - 1, k + skip).astype(int)[skip:]
    return [(int(rr[i]), int(cc[i])) for i in idx]


def test_correct_page_without_an_analysis_points_to_explore(app):
    goto(app, "correct")
    assert any("Run the model on the Explore page first" in i.value for i in app.info)


def test_add_points_retrain_undo_go_back_export(app, tmp_path, monkeypatch):
    monkeypatch.setattr(correction, "SAVE_ROOT", tmp_path / "runs")
    work = _open(app)
    assert "Feature cache" in " ".join(c.value for c in app.caption)
    assert app.radio(key="correct_round").options == ["Base model"]
    # the user says: these crops pixels are built-up, and these trees are trees
    built = _pixels(work, "crops", 4)
    trees = _pixels(work, "trees", 3)
    for r, c in built:
        _type_point(app, work, r, c, "built")
    for r, c in trees:
        _type_point(app, work, r, c, "trees")
    counts = {row["class"]: row["points"] for row in app.dataframe[0].value.to_dict("records")}
    assert counts == {"built": 4, "trees": 3}
    app.button(key="correct_retrain").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.radio(key="correct_round").options == ["Base model", "Round 1"]
    assert len(app.image) == 3 and "Changed pixels" in app.image[2].proto.imgs[0].caption
    cp = work.current
    got = [cp.classes[cp.labels[r, c]] for r, c in built]
    assert got.count("built") >= 3, got  # the corrected map follows the points
    base = work.checkpoints[0]
    assert (cp.labels != base.labels).any()
    areas = app.dataframe[1].value
    assert set(areas.columns) == {"class", "Base model (km²)", "Round 1 (km²)", "change (km²)"}
    built_row = areas[areas["class"] == "built"].iloc[0]
    assert built_row["change (km²)"] > 0
    assert "agreement with your held-back points" in " ".join(m.value for m in app.markdown).lower()
    assert "not an accuracy estimate" in " ".join(c.value for c in app.caption)
    assert "No point was held back yet" in " ".join(c.value for c in app.caption)  # under 5 points a class
    # undo removes the last point; the round stays
    app.button(key="correct_undo").click().run()
    counts = {row["class"]: row["points"] for row in app.dataframe[0].value.to_dict("records")}
    assert counts == {"built": 4, "trees": 2} and len(work.checkpoints) == 2
    # a second round, then back to the first: its map and its points come back exactly
    first = work.current.labels.copy()
    for r, c in _pixels(work, "grass", 2):
        _type_point(app, work, r, c, "grass")
    app.button(key="correct_retrain").click().run()
    assert app.radio(key="correct_round").options == ["Base model", "Round 1", "Round 2"]
    app.radio(key="correct_round").set_value("Round 1").run()
    app.button(key="correct_go_back").click().run()
    assert app.radio(key="correct_round").options == ["Base model", "Round 1"]
    assert np.array_equal(work.current.labels, first) and len(work.samples) == 7
    # exports: GeoPackage and CSV of the corrections, the map as a COG, the bundle into runs/
    assert len(app.get("download_button")) == 4
    # the corrected map for QGIS: COG + RAT naming the user's classes + .qml + STAC Item, the round in the provenance
    import zipfile

    from tests.core.test_map_outputs import gdal_rat, gdalinfo_json

    pkg = tmp_path / "pkg"
    zipfile.ZipFile(io.BytesIO(correction.map_package_bytes(work))).extractall(pkg)
    stem = f"{work.analysis.scene_id}_corrected"
    assert sorted(p.name for p in pkg.iterdir()) == sorted(f"{stem}{s}" for s in (".tif", ".tif.aux.xml", ".qml", ".json"))
    info = gdalinfo_json(pkg / f"{stem}.tif")
    assert [row["f"][2] for row in gdal_rat(info)["row"]] == list(work.current.classes)
    assert "built" in (pkg / f"{stem}.qml").read_text()
    tags = info["metadata"][""]
    assert tags["LULC_BUNDLE"].endswith("+ correction, Round 1") and len(tags["LULC_BUNDLE_SHA256"]) == 64
    item = json.loads((pkg / f"{stem}.json").read_text())
    classes = {c["value"]: c["name"] for c in item["assets"]["map"]["classification:classes"]}
    assert classes == {**dict(enumerate(work.current.classes)), 255: "no_data"}
    gpkg = tmp_path / "c.gpkg"
    gpkg.write_bytes(correction.points_gpkg_bytes(work))
    import pyogrio

    assert [n for n, _ in pyogrio.list_layers(gpkg)] == ["corrections"]
    fields = pyogrio.read_info(gpkg, layer="corrections")["fields"].tolist()
    assert {"class", "class_id", "color", "round", "time"} <= set(fields)
    app.button(key="correct_save").click().run()
    assert not app.error, [e.value for e in app.error]
    saved = next((tmp_path / "runs").iterdir())
    assert saved.name.startswith("default-corrected-") and any(str(saved) in s.value for s in app.success)
    card = json.loads((saved / "card.json").read_text())
    assert {k: v for k, v in card["training"]["correction"]["points_per_class"].items() if v} == {"built": 4, "trees": 3}
    assert len(card["training"]["correction"]["base_sha256"]) == 64
    with open(saved / "corrections.csv") as f:
        assert len(list(csv.DictReader(f))) == 7


@pytest.mark.parametrize(("built", "trees", "order", "priors"), [
    ("built", "trees", ["trees", "built"], "replay"),  # the base's classes: replay of its map
    ("settlement", "woodland", ["settlement", "woodland"], "em:dynamicworld"),  # the user's own: the port's EM priors
])
def test_finetune_from_the_saved_csv_reproduces_the_pages_bundle(app, tmp_path, monkeypatch, data_dir, built, trees, order, priors):
    from trainer.cli import main

    monkeypatch.setattr(correction, "SAVE_ROOT", tmp_path / "runs")
    work = _open(app)
    if built not in work.classes:
        for name in (built, trees):
            app.text_input(key="correct_new_name").set_value(name).run()
            app.button(key="correct_add_class").click().run()
    for r, c in _pixels(work, "crops", 6):
        _type_point(app, work, r, c, built)
    for r, c in _pixels(work, "trees", 5):
        _type_point(app, work, r, c, trees)
    app.button(key="correct_retrain").click().run()
    assert not app.error, [e.value for e in app.error]
    assert work.current.round.priors == priors and (work.cache.prior_features is not None) == (priors != "replay")
    agreement = app.dataframe[2].value  # one point of each class held back
    assert list(agreement["class"]) == [*order, "all"] and list(agreement["held back"]) == [1, 1, 2]
    app.button(key="correct_save").click().run()
    saved = next((tmp_path / "runs").iterdir())
    image = f"{data_dir}/samples/{SCENE}/image_s2.tif"
    cli = tmp_path / "cli"
    assert main(["finetune", "--checkpoint", "models/default", "--input", image, "--points", str(saved / "corrections.csv"),
                 "--output", str(cli)]) == 0
    maps = {}
    for name, bundle in (("app", saved), ("cli", cli)):
        assert main(["predict", "--checkpoint", str(bundle), "--input", image, "--output", str(tmp_path / f"{name}.tif")]) == 0
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            maps[name] = ds.read(1)
    assert np.array_equal(maps["app"], maps["cli"])  # same seed, same points: same labels
    # and the page showed that map
    assert (maps["app"] == work.current.labels).mean() > 0.999
    app_card = json.loads((saved / "card.json").read_text())["training"]["correction"]
    cli_card = json.loads((cli / "card.json").read_text())["training"]["correction"]
    assert app_card["held_back_agreement"] == cli_card["held_back_agreement"]
    assert app_card["priors"] == cli_card["priors"] == priors


def test_bad_input_is_one_sentence_and_keeps_the_round(app, monkeypatch):
    work = _open(app)
    # a point outside the AOI
    app.text_input(key="correct_latlon").set_value("45.0, 10.0").run()
    app.button(key="correct_add_point").click().run()
    assert len(app.error) == 1 and "outside the analysed image" in app.error[0].value and not work.samples
    # inside the image but outside the AOI, and on a pixel without data (the masks as a drawn AOI and nodata make them)
    work.analysis.aoi_mask[:10, :] = False
    work.cache.valid[95, 50] = False
    lat, lon = _latlon(work, 2, 50)
    app.text_input(key="correct_latlon").set_value(f"{lat:.7f}, {lon:.7f}").run()
    app.button(key="correct_add_point").click().run()
    assert len(app.error) == 1 and "outside the AOI" in app.error[0].value and not work.samples
    lat, lon = _latlon(work, 95, 50)
    app.text_input(key="correct_latlon").set_value(f"{lat:.7f}, {lon:.7f}").run()
    app.button(key="correct_add_point").click().run()
    assert len(app.error) == 1 and "without data" in app.error[0].value and not work.samples
    work.analysis.aoi_mask[:10, :] = True
    work.cache.valid[95, 50] = True
    app.text_input(key="correct_latlon").set_value("fifty, ten").run()
    app.button(key="correct_add_point").click().run()
    assert "latitude, longitude" in app.error[0].value
    # one class only: Retrain refuses, no round is made
    for r, c in _pixels(work, "crops", 3):
        _type_point(app, work, r, c, "crops")
    app.button(key="correct_retrain").click().run()
    assert len(app.error) == 1 and "one class" in app.error[0].value and len(work.checkpoints) == 1
    # one point of a class
    r, c = _pixels(work, "trees", 1)[0]
    _type_point(app, work, r, c, "trees")
    app.button(key="correct_retrain").click().run()
    assert "only one point" in app.error[0].value and len(work.checkpoints) == 1
    # more points than a correction set may hold
    monkeypatch.setattr(correction, "MAX_POINTS", 4)
    r, c = _pixels(work, "trees", 1, skip=3)[0]
    _type_point(app, work, r, c, "trees")
    assert "more than the 4" in app.error[0].value and len(work.samples) == 4


def test_add_a_class_merge_polygons_and_suggestions(app):
    work = _open(app)
    app.text_input(key="correct_new_name").set_value("quarry").run()
    app.button(key="correct_add_class").click().run()
    assert "quarry (your class)" in app.selectbox(key="correct_class").options and app.selectbox(key="correct_class").value == "quarry"
    assert work.colors["quarry"] == "#ff7f00"
    app.selectbox(key="correct_merge_from").set_value("grass").run()
    app.selectbox(key="correct_merge_into").set_value("crops").run()
    app.button(key="correct_merge").click().run()
    assert "grass" not in app.selectbox(key="correct_class").options
    # a polygon adds at most POLYGON_SAMPLE random pixels of its inside
    crs, tr, h, w = work.grid
    lat0, lon0 = _latlon(work, 5, 5)
    lat1, lon1 = _latlon(work, 60, 70)
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    n = correction.add_polygon(work, {"type": "Polygon", "coordinates": [ring]}, "crops")
    assert n == correction.POLYGON_SAMPLE and {s.polygon for s in work.samples} == {0}
    with pytest.raises(correction.CorrectionError, match="no pixel with data"):
        far = [[10.0, 45.0], [10.1, 45.0], [10.1, 45.1], [10.0, 45.0]]
        correction.add_polygon(work, {"type": "Polygon", "coordinates": [far]}, "crops")
    app.run()
    rows = app.dataframe[0].value.to_dict("records")
    assert rows == [{"class": "crops", "clicked": 0, "from polygons": 100, "points": 100}]
    app.button(key="correct_suggest").click().run()
    assert len(work.suggestions) == correction.SUGGEST_K and "suggested" in app.success[0].value
    html = str(app.get("component_instance")[0].proto)
    assert "suggested" in html  # the suggestions are drawn on the map
    # the merged base class is replayed as the class it joined: no grass left on the new map
    for r, c in _pixels(work, "trees", 3):
        _type_point(app, work, r, c, "trees")
    app.button(key="correct_retrain").click().run()
    assert not app.error, [e.value for e in app.error]
    assert "grass" not in work.current.classes and work.current.round.replay_map["grass"] == "crops"
