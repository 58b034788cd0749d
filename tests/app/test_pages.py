"""Each page driven with Streamlit's AppTest: pick a scene, run, switch references, bad input."""

from __future__ import annotations

import json

import pytest

from app import services
from app.state import KEY
from tests.app.conftest import goto, run_scene

BRANDENBURG_5KM = "12.56, 52.465, 12.633, 52.51"  # about 5 x 5 km inside the Brandenburg scene


def test_landing_page_shows_scenes_map_and_default_model(app, data_dir):
    from core.sources.samples import list_scenes

    assert "LULC Explorer" in app.title[0].value
    pack = list_scenes(data_dir)  # every scene of the pack, whatever its version
    assert len(pack) >= 4
    assert app.selectbox(key="scene").options == [s.id + ("" if s.georeferenced else " (no georeference)") for s in pack]
    assert app.selectbox(key="scene").value == "brandenburg-2017-02-16"
    assert any("models/default" in o for o in app.selectbox(key="bundle").options)
    assert app.radio(key="aoi_mode").options == ["Draw on map", "GeoJSON", "Bounding box", "Whole scene"]
    # the folium map is a custom component; its HTML carries the locally served Leaflet and the draw tool
    maps = app.get("component_instance")
    assert len(maps) == 1
    html = str(maps[0].proto)
    assert "/app/static/vendor/leaflet/leaflet.js" in html and "leaflet.draw.js" in html and "cdn.jsdelivr" not in html


def test_bbox_aoi_runs_prediction_and_metrics_show_charts(app):
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=BRANDENBURG_5KM)
    assert not app.error, [e.value for e in app.error]
    assert "km²" in app.success[0].value
    state = app.session_state[KEY]
    assert state.analysis is not None and 15 < state.analysis.aoi_km2 < 30
    goto(app, "metrics")
    labels = [m.label for m in app.metric]
    assert labels[:3] == ["mIoU", "Overall accuracy", "Cohen's kappa"]
    assert 0 <= float(app.metric[0].value) <= 1
    charts = app.get("plotly_chart")
    assert len(charts) == 3
    iou = json.loads(charts[0].proto.spec)
    assert iou["data"][0]["type"] == "bar" and "water" in iou["data"][0]["x"]
    assert iou["data"][0]["marker"]["color"][0] == "#419bdf"
    assert len(app.dataframe) == 3


def test_switching_reference_labels_applies_the_crosswalk(app):
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=BRANDENBURG_5KM)
    goto(app, "compare")
    assert app.selectbox(key="reference").options == ["Dynamic World", "OpenStreetMap land use", "Dynamic World model (run locally)"]
    assert len(app.image) >= 1 and not app.expander  # DW vs DW: no crosswalk
    assert any("not ground truth" in w.value for w in app.warning)  # the DW reference is a model
    app.selectbox(key="reference").set_value("osm").run()
    assert not app.exception
    assert any("osm → dynamic_world" in e.label for e in app.expander)
    caption = " ".join(c.value for c in app.caption)
    assert "no reference label" in caption
    goto(app, "metrics")
    app.selectbox(key="reference").set_value("osm").run()
    excluded = [m for m in app.metric if m.label.startswith("Excluded")][0].value
    assert float(excluded.rstrip("%")) > 20  # OSM leaves most pixels unlabelled


def test_scene_without_georeference_and_water_reference(app):
    run_scene(app, "dfc2020-roi0000-validation-p0")
    assert app.radio(key="aoi_mode").options == ["Whole scene"]
    goto(app, "compare")
    app.selectbox(key="reference").set_value("dfc").run()
    assert any("dfc2020 → dynamic_world" in e.label for e in app.expander)


@pytest.mark.parametrize(
    ("mode", "value", "message"),
    [
        ("Bounding box", "0.1, 0.1, 0.2, 0.2", "outside the data"),
        ("Bounding box", "12.6, 52.5, 12.5", "four numbers"),
        ("GeoJSON", '{"type": "Polygon", "coordinates": [[[12.55, 52.47], [12.6, 52.5], [12.6, 52.47], [12.55, 52.5], [12.55, 52.47]]]}', "invalid"),
        ("GeoJSON", "{not json", "not valid JSON"),
    ],
)
def test_invalid_aoi_gets_a_clear_message(app, mode, value, message):
    key = "bbox" if mode == "Bounding box" else "geojson"
    run_scene(app, "brandenburg-2017-02-16", mode, **{key: value})
    assert app.error and message in app.error[0].value
    assert app.session_state[KEY].analysis is None


def test_aoi_above_the_size_limit(app, monkeypatch):
    monkeypatch.setattr(services, "MAX_AOI_KM2", 10.0)
    run_scene(app, "brandenburg-2017-02-16", "Bounding box", bbox=BRANDENBURG_5KM)
    assert app.error and "limit is 10 km²" in app.error[0].value and "you typed" in app.error[0].value


def test_bundle_whose_bands_do_not_match_the_scene(app, tmp_path, monkeypatch):
    from core.classes import DYNAMIC_WORLD
    from models.bundle import ModelCard, save_bundle
    from models.registry import create_model

    card = ModelCard(name="radar", arch="unet", encoder="resnet18", bands=["VV", "VH"], mean=[-12.0, -19.0], std=[3.0, 3.0],
                     classes=DYNAMIC_WORLD.to_dict())
    radar = str(save_bundle(create_model("unet", "resnet18", in_channels=2, num_classes=9), card, tmp_path / "radar"))
    monkeypatch.setattr(services, "bundle_paths", lambda: [radar])
    app.run()
    run_scene(app, "brandenburg-2017-02-16")
    msg = app.error[0].value if app.error else ""
    # refused before any pixel is read: either by the missing bands or (issue 18) by naming both sensors
    assert ("VV" in msg and "lacks" in msg) or ("Sentinel-2" in msg and "model's sensor" in msg), msg
    assert app.session_state[KEY].analysis is None


def test_pages_before_any_run_point_back_to_explore(app):
    for name in ("compare", "metrics", "export"):
        goto(app, name)
        assert "Explore" in app.info[0].value


def test_export_offers_cog_metrics_and_png(app):
    run_scene(app, "sen1floods11-spain-7370579")
    goto(app, "export")
    labels = [b.label for b in app.get("download_button")]
    assert any("Cloud-Optimized GeoTIFF" in label for label in labels)
    assert any("CSV" in label for label in labels) and any("JSON" in label for label in labels) and any("PNG" in label for label in labels)


def test_models_page_lists_the_default_bundle_with_its_card(app):
    goto(app, "models")
    assert any("default" in e.label for e in app.expander)
    assert len(app.dataframe) >= 1


def test_models_page_reports_a_card_with_an_unknown_scheme(app, tmp_path, monkeypatch):
    """A card whose classes cannot be read is one error line on the Models page, not a crash; a card that carries
    a scheme of its own (issue 18: a user's class file) is listed with its classes."""
    from core.classes import DYNAMIC_WORLD
    from models.card import ModelCard, write_card

    own = {**DYNAMIC_WORLD.to_dict(), "name": "scheme_from_the_future"}
    good = write_card(ModelCard(name="future", arch="unet", encoder="resnet18", bands=["B2"], mean=[1.0], std=[1.0],
                                classes=own), tmp_path / "future")
    bad = write_card(ModelCard(name="broken", arch="unet", encoder="resnet18", bands=["B2"], mean=[1.0], std=[1.0],
                               classes=own), tmp_path / "broken")
    card = json.loads((bad / "card.json").read_text())
    card["classes"] = {"name": "scheme_without_classes", "classes": [{"id": "x"}]}  # what write_card would refuse
    (bad / "card.json").write_text(json.dumps(card))
    paths = [*services.bundle_paths(), str(good), str(bad)]
    monkeypatch.setattr(services, "bundle_paths", lambda: paths)
    goto(app, "models")
    assert any("broken" in e.value and "card class 0" in e.value for e in app.error), [e.value for e in app.error]
    assert not any("future" in e.value for e in app.error), [e.value for e in app.error]
    assert any("future" in e.label for e in app.expander)
    assert any("default" in e.label for e in app.expander)


def test_train_page_offers_configs(app):
    goto(app, "train")
    assert "trainer/configs/default.yaml" in app.selectbox[0].options
    assert app.button[0].label == "Start training"


def test_earth_engine_without_credentials_keeps_the_samples(app, monkeypatch):
    monkeypatch.setattr(services, "earth_engine_problems", lambda: ["set EARTHENGINE_PROJECT to a Cloud project registered for Earth Engine"])
    app.radio(key="source").set_value("Earth Engine").run()
    assert app.warning and "EARTHENGINE_PROJECT" in app.warning[0].value
    assert app.selectbox(key="scene").value == "brandenburg-2017-02-16"
    run_scene(app, "sen1floods11-spain-7370579")
    assert app.success


def test_earth_engine_aoi_anywhere_gets_imagery_prediction_and_labels(app, monkeypatch, tmp_path):
    from tests.fakes import FakeEarthEngine

    fake = FakeEarthEngine()
    monkeypatch.setattr(services, "earth_engine_problems", lambda: [])
    monkeypatch.setattr(services, "earth_engine_adapter", lambda: fake)
    monkeypatch.setattr(services, "CACHE_DIR", tmp_path)
    app.radio(key="source").set_value("Earth Engine").run()
    assert "Whole scene" not in app.radio(key="aoi_mode").options
    app.radio(key="aoi_mode").set_value("Bounding box").run()
    app.text_input(key="bbox").set_value("36.80, -1.30, 36.83, -1.27").run()  # Nairobi
    app.button(key="run").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    a = app.session_state[KEY].analysis
    assert a.source == "earth_engine" and a.image.crs.to_epsg() == 32737 and set(a.references) == {"dw", "worldcover", "dw_model"}  # dw_model: Dynamic World run locally
    collections = {c for c, _ in fake.requests}
    assert collections == {"COPERNICUS/S2_HARMONIZED", "GOOGLE/DYNAMICWORLD/V1", "ESA/WorldCover/v200"}
    goto(app, "compare")
    app.selectbox(key="reference").set_value("worldcover").run()
    assert any("esa_worldcover → dynamic_world" in e.label for e in app.expander)
    goto(app, "metrics")
    assert int(app.metric[3].value.replace(",", "")) > 10_000  # pixels compared


def _upload_bytes(bands, crs="EPSG:32633", size=(120, 160)) -> bytes:
    from rasterio.windows import Window

    from core.io.raster import cog_bytes
    from core.sources.samples import load_image

    img = load_image("brandenburg-2017-02-16", bands, Window(300, 200, size[1], size[0]))
    if crs is None:
        from dataclasses import replace

        img = replace(img, crs=None)
    return cog_bytes(img)


def test_uploaded_geotiff_is_compared_with_the_local_dynamic_world_model(app):
    app.radio(key="source").set_value("Upload GeoTIFF").run()
    assert app.button(key="run").disabled
    data = _upload_bytes(["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"])
    app.file_uploader(key="upload").set_value(("aoi.tif", data, "image/tiff")).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    app.radio(key="aoi_mode").set_value("Whole scene").run()
    app.button(key="run").click().run()
    assert app.success and "aoi.tif" in app.success[0].value
    goto(app, "compare")
    assert app.selectbox(key="reference").options == ["Dynamic World model (run locally)"]
    assert any("not ground truth" in w.value for w in app.warning) and len(app.image) >= 3
    goto(app, "metrics")
    assert any("not ground truth" in w.value for w in app.warning) and len(app.get("plotly_chart")) == 3
    goto(app, "export")
    assert any("GeoTIFF" in b.label for b in app.get("download_button"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"II*\x00garbage-not-a-tiff", "corrupt"),
        ("nocrs", "no CRS"),
        ("fewbands", "B11"),
    ],
)
def test_bad_uploads_get_clear_messages(app, payload, message):
    if payload == "nocrs":
        payload = _upload_bytes(["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"], crs=None)
    elif payload == "fewbands":
        payload = _upload_bytes(["B2", "B3", "B4", "B8"])
    app.radio(key="source").set_value("Upload GeoTIFF").run()
    app.file_uploader(key="upload").set_value(("x.tif", payload, "image/tiff")).run()
    if message == "B11":
        app.radio(key="aoi_mode").set_value("Whole scene").run()
        app.button(key="run").click().run()
    assert app.error and message in app.error[0].value, [e.value for e in app.error]
    assert not app.exception


def test_precision_is_fp32_unless_the_user_asks_for_bf16(app):
    """The run policy's precision: fp32 (as `python -m trainer predict`) by default; bf16 only from the toggle, with a warning."""
    run_scene(app, "hungary-2020-08-12")
    state = app.session_state[KEY]
    policy = state.analysis.prediction.classes.meta["run_policy"]
    assert policy.precision == "fp32"
    assert any(c.value.startswith("Run: ") and "torch fp32" in c.value for c in app.caption)
    fp32 = state.analysis.prediction.classes.data[0].copy()
    app.toggle(key="bf16").set_value(True).run()
    app.button(key="run").click().run()
    policy = app.session_state[KEY].analysis.prediction.classes.meta["run_policy"]
    assert policy.precision == "bf16"
    assert any("precision bf16" in w.value for w in app.warning)
    assert app.session_state[KEY].analysis.prediction.classes.data[0].shape == fp32.shape
