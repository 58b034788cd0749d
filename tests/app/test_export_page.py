"""The Export page gives the map as ``predict`` writes it: COG + RAT + QML + STAC Item with provenance, confidence, probabilities (issue 20).

The downloads are read back as a user gets them: the bytes each ``download_button`` of the page was
given are recorded, the zips unpacked into a folder and opened with rasterio and GDAL (``gdalinfo``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from types import SimpleNamespace

import numpy as np
import pyogrio
import pytest
import rasterio
import streamlit
from streamlit.delta_generator import DeltaGenerator

from app import exports
from app.state import KEY, AppState
from core.classes import get_scheme
from core.config import REPO_ROOT
from core.products.provenance import metadata_fields
from core.products.stac import validate_core
from tests.app.conftest import goto, run_scene
from tests.core.test_map_outputs import gdal_rat, gdalinfo_json

SMALL = "12.56, 52.465, 12.633, 52.51"
SCENE = "brandenburg-2017-02-16"
SHA = hashlib.sha256((REPO_ROOT / "models" / "default" / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture
def downloads(monkeypatch) -> dict[str, tuple[str, bytes]]:
    """file name -> (label, bytes) of every download button the pages draw (module-level and in columns)."""
    got: dict[str, tuple[str, bytes]] = {}
    original = DeltaGenerator.download_button

    def record(self, label, data, file_name=None, *args, **kwargs):
        raw = data() if callable(data) else data
        got[file_name] = (label, raw.encode() if isinstance(raw, str) else bytes(raw))
        return original(self, label, data, file_name, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", record)
    monkeypatch.setattr(streamlit, "download_button", lambda *a, **k: record(streamlit._main, *a, **k))
    return got


def _gpkg_table(path):
    import pandas as pd
    from pyogrio.raw import read

    meta, _, _, fields = read(path)
    return pd.DataFrame(dict(zip(meta["fields"], fields, strict=True)))


def _unzip(data: bytes, folder) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(folder)
        return zf.namelist()


def test_export_page_zip_opens_with_class_names_style_stac_and_the_runs_provenance(app, downloads, tmp_path):
    run_scene(app, SCENE, "Bounding box", bbox=SMALL)
    goto(app, "export")
    stem = f"{SCENE}_lulc"
    names = _unzip(downloads[f"{stem}.zip"][1], tmp_path)
    assert names == [f"{stem}{s}" for s in exports.MAP_ZIP_FILES]
    tif = tmp_path / f"{stem}.tif"
    scheme = get_scheme("dynamic_world")

    qml = (tmp_path / f"{stem}.qml").read_text()
    assert 'type="paletted"' in qml and all(f'label="{n}"' in qml for n in scheme.names)
    assert "singlebandpseudocolor" in (tmp_path / f"{stem}_confidence.qml").read_text()

    a = app.session_state[KEY].analysis
    with rasterio.open(tif) as ds:
        tags = ds.tags()
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255 and ds.colormap(1)[0][:3] == (0x41, 0x9B, 0xDF)
        assert np.array_equal(ds.read(1), a.prediction.classes.data[0])
    assert tags["LULC_BUNDLE"] == "default" and tags["LULC_BUNDLE_SHA256"] == SHA
    assert tags["LULC_RUN_TILE"] == "256" and tags["LULC_RUN_RUNTIME"] == "torch" and tags["LULC_RUN_PRECISION"] == "fp32"
    assert tags["LULC_INPUT_NAME"] == SCENE and tags["LULC_INPUT_DATE"] == "2017-02-16" and "LULC_INPUT_OFFSET_DN" in tags
    with rasterio.open(tmp_path / f"{stem}_confidence.tif") as ds:
        assert ds.dtypes[0] == "float32" and ds.tags()["LULC_BUNDLE_SHA256"] == SHA

    item = json.loads((tmp_path / f"{stem}.json").read_text())
    validate_core(item)  # the extension schemas are online only: their fields are checked one by one below
    props = item["properties"]
    assert props["lulc:bundle_sha256"] == SHA and props["lulc:run"]["tile"] == 256 and props["lulc:input"]["name"] == SCENE
    assert item["properties"]["datetime"].startswith("2017-02-16") and props["lulc:input_decision"]
    assert set(item["assets"]) >= {"map", "confidence", "attribute_table", "style", "confidence_style"}
    for asset in item["assets"].values():  # every file of the zip, with its own checksum
        path = tmp_path / asset["href"].removeprefix("./")
        assert asset["file:checksum"] == "1220" + hashlib.sha256(path.read_bytes()).hexdigest()
    classes = item["assets"]["map"]["classification:classes"]
    assert [c["title"] for c in classes if not c.get("nodata")] == list(scheme.names)
    assert item["properties"]["proj:code"] == "EPSG:32633" and item["properties"]["proj:shape"] == list(a.prediction.classes.data.shape[1:])

    assert downloads[f"{stem}.tif"][1] == tif.read_bytes(), "the plain COG is the zip's map"
    assert sorted(_unzip(downloads[f"{stem}_confidence.zip"][1], tmp_path / "c")) == [f"{stem}_confidence.qml", f"{stem}_confidence.tif"]

    # the probabilities: on request, as `predict --probabilities` writes them
    assert f"{stem}_probabilities.tif" not in downloads
    app.button(key="export_probabilities").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    with rasterio.MemoryFile(downloads[f"{stem}_probabilities.tif"][1]) as mem, mem.open() as ds:
        assert ds.count == 9 and ds.descriptions == tuple(scheme.names) and ds.nodata == 255 and ds.dtypes[0] == "uint8"
        assert ds.tags()["LULC_BUNDLE_SHA256"] == SHA and ds.tags()["LULC_PROBABILITY_SCALE"] == "250"
        p = ds.read()
    cls = a.prediction.classes.data[0]
    valid = cls != 255
    assert (p[:, ~valid] == 255).all() and p[:, valid].max() <= 250
    assert np.abs(p[:, valid].astype(int).sum(axis=0) - 250).max() <= 9, "the K probabilities sum to 1 (x 250, 9 roundings)"
    agree = (p[:, valid].argmax(axis=0) == cls[valid]).mean()
    assert agree > 0.999, f"the winning band is the map's class ({agree:.4%}; byte rounding can tie a few)"
    conf = a.prediction.confidence.data[0][valid]
    assert np.abs(p[:, valid].max(axis=0) / 250 - conf).max() <= 0.5 / 250 + 1e-6

    # the Accuracy & area page: points and polygons carry the same provenance
    goto(app, "accuracy")
    for suffix in (".csv", ".gpkg"):
        data = downloads[f"{SCENE}_points{suffix}"][1]
        (tmp_path / f"points{suffix}").write_bytes(data)
    import pandas as pd

    csv = pd.read_csv(tmp_path / "points.csv")
    gpkg = _gpkg_table(tmp_path / "points.gpkg")
    for table in (csv, gpkg):
        assert (table["lulc_bundle_sha256"] == SHA).all() and (table["lulc_bundle"] == "default").all()
        assert (table["lulc_input_name"] == SCENE).all() and (table["lulc_input_date"] == "2017-02-16").all()
        assert (table["lulc_run_tile"].astype(str) == "256").all() and "lulc_software_version" in table and len(table) > 0
    app.button(key="build_report").click().run()
    html = app.session_state[KEY].report_html
    assert SHA in html and "tile 256 px, overlap 32 px, torch fp32" in html, "the report names what the files' tags name"
    app.button(key="build_polygons").click().run()
    (tmp_path / "poly.gpkg").write_bytes(downloads[f"{SCENE}_lulc.gpkg"][1])
    poly = _gpkg_table(tmp_path / "poly.gpkg")
    assert (poly["lulc_bundle_sha256"] == SHA).all() and (poly["lulc_run_precision"] == "fp32").all()
    assert pyogrio.read_info(tmp_path / "poly.gpkg")["layer_metadata"]["LULC_BUNDLE_SHA256"] == SHA

    # last, as it skips where Debian's gdal-bin is absent (and fails in CI)
    rat = gdal_rat(gdalinfo_json(tif))  # GDAL finds the RAT in the unzipped .tif.aux.xml
    assert rat is not None and rat["tableType"] == "thematic"
    col = [f["name"] for f in rat["fieldDefn"]].index("ClassName")
    assert [row["f"][col] for row in rat["row"]] == list(scheme.names)


def test_earth_engine_provenance_names_collection_dates_and_the_cloud_threshold_it_ran_with():
    a = SimpleNamespace(source="earth_engine", image=SimpleNamespace(
        meta={"collection": "COPERNICUS/S2_HARMONIZED", "start": "2021-06-01", "end": "2021-08-31"}))
    state = AppState()
    assert exports.earth_engine_request(a, state) == {"collection": "COPERNICUS/S2_HARMONIZED", "start": "2021-06-01",
                                                      "end": "2021-08-31", "cloud_threshold": "0.6"}
    state.ee_start = "2022-01-01"  # the session moved on since the fetch: its threshold may not be the fetch's
    assert "cloud_threshold" not in exports.earth_engine_request(a, state)
    assert exports.earth_engine_request(SimpleNamespace(source="samples"), state) == {}


def test_an_uploads_tags_give_its_date_level_and_baseline():
    tags = {"PRODUCT_URI": "S2B_MSIL2A_20200812T094039_N0214_R036_T34TCT_20200812T120000.SAFE", "SENSING_TIME": "2020-08-12T09:40:39Z",
            "PROCESSING_LEVEL": "Level-2A"}
    got = metadata_fields(tags)
    assert got["date"] == "2020-08-12" and got["baseline"] == "02.14" and got["level"] == "L2A"


def test_export_stem_of_an_upload_is_a_safe_file_name():
    assert exports.export_stem(SimpleNamespace(source="upload", scene_id="my field (2020).tif")) == "my_field_2020_lulc"
    assert exports.export_stem(SimpleNamespace(source="samples", scene_id=SCENE)) == f"{SCENE}_lulc"


def test_class_map_files_name_a_users_own_classes_for_the_correct_pages_map(tmp_path):
    """The call the Correct page needs for its corrected map (its classes are the user's, ids 0..K-1)."""
    from affine import Affine
    from rasterio.crs import CRS

    from core.io.raster import GeoRaster

    labels = np.array([[0, 1, 2, 255]] * 4, np.uint8)[None]
    raster = GeoRaster(labels, CRS.from_epsg(32633), Affine(10, 0, 400_000, 0, -10, 5_300_000), 255, ("label",))
    table = {0: ("water", "#419bdf"), 1: ("olive grove", "#88b053"), 2: ("greenhouses & <plastic>", "#c4281b")}
    files = exports.class_map_files("scene_corrected", raster, table, None)
    assert list(files) == ["scene_corrected.tif", "scene_corrected.tif.aux.xml", "scene_corrected.qml", "scene_corrected.json"]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    rat = gdal_rat(gdalinfo_json(tmp_path / "scene_corrected.tif"))
    col = [f["name"] for f in rat["fieldDefn"]].index("ClassName")
    assert [row["f"][col] for row in rat["row"]] == ["water", "olive grove", "greenhouses & <plastic>"]
    assert 'label="greenhouses &amp; &lt;plastic&gt;"' in (tmp_path / "scene_corrected.qml").read_text()
    item = json.loads((tmp_path / "scene_corrected.json").read_text())
    validate_core(item)
    assert [c["title"] for c in item["assets"]["map"]["classification:classes"]][:3] == [v[0] for v in table.values()]


def test_an_earth_engine_runs_map_names_the_collection_dates_and_cloud_threshold(monkeypatch, tmp_path):
    """Through services.run_earth_engine with the fake adapter: the fetched image's request reaches every file."""
    from app import services
    from tests.fakes import FakeEarthEngine

    monkeypatch.setattr(services, "earth_engine_adapter", lambda: FakeEarthEngine())
    monkeypatch.setattr(services, "CACHE_DIR", tmp_path / "cache")
    state = AppState()
    state.aoi_mode, state.bbox_text = "Bounding box", "12.56, 52.47, 12.58, 52.48"
    state.ee_start, state.ee_end, state.ee_cloud = "2021-07-01", "2021-07-31", 0.55
    services.run_earth_engine(state)
    a = services.run_earth_engine(state)  # the second run reads the cached downloads: they still say what was fetched
    files = exports.map_files(a, state)
    stem = exports.export_stem(a)
    (tmp_path / f"{stem}.tif").write_bytes(files[f"{stem}.tif"])
    with rasterio.open(tmp_path / f"{stem}.tif") as ds:
        tags = ds.tags()
    assert tags["LULC_EE_COLLECTION"].startswith("COPERNICUS/S2") and tags["LULC_EE_CLOUD_THRESHOLD"] == "0.55"
    assert (tags["LULC_EE_START"], tags["LULC_EE_END"]) == ("2021-07-01", "2021-07-31") and tags["LULC_BUNDLE_SHA256"] == SHA
    item = json.loads(files[f"{stem}.json"])
    assert item["properties"]["start_datetime"].startswith("2021-07-01") and item["properties"]["end_datetime"].startswith("2021-07-31")
    assert item["properties"]["lulc:earth_engine"]["cloud_threshold"] == "0.55"
