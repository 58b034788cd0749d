"""Maps that open right everywhere (issue 20): the raster attribute table read back by GDAL, QGIS/SLD styles
parsed back, provenance tags, and STAC Items and Catalogs (core schema offline, extension fields one by one)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from core.classes import get_scheme
from core.io.raster import GeoRaster, class_table_xml, rat_path, scheme_classes, write_class_table, write_cog
from core.products.provenance import Provenance, file_sha256, input_metadata, run_provenance, software_version
from core.products.stac import EXTENSIONS, map_item, validate_core, write_catalog, write_item, write_map_sidecars
from core.products.styles import CONFIDENCE_RAMP, class_map_qml, class_map_sld, confidence_qml, confidence_sld

DW = get_scheme("dynamic_world")


def gdalinfo_json(path: Path) -> dict:
    """``gdalinfo -json`` of a file; skipped where Debian's gdal-bin is absent, except in CI (``CI`` set), where it fails."""
    exe = shutil.which("gdalinfo")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("gdalinfo is not installed (make browser installs gdal-bin); the RAT must be read back by GDAL in CI")
        pytest.skip("gdalinfo not installed (apt-get install gdal-bin)")
    out = subprocess.run([exe, "-json", str(path)], capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


def gdal_rat(info: dict) -> dict | None:
    """The RAT of band 1 in ``gdalinfo -json`` (top level in GDAL 3.6, under the band in later releases)."""
    return info.get("rat") or next((b.get("rat") for b in info.get("bands", []) if b.get("rat")), None)


def class_map(height: int = 40, width: int = 50, seed: int = 0, crs: str | None = "EPSG:32760") -> GeoRaster:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 9, size=(1, height, width)).astype(np.uint8)
    data[0, :3, :4] = 255
    return GeoRaster(data, CRS.from_string(crs) if crs else None, Affine(10.0, 0.0, 562990.0, 0.0, -10.0, 5690260.0), 255,
                     ("class",))


# ------------------------------------------------------------------------------------------- RAT


def test_class_map_cog_has_a_thematic_rat_naming_every_class_read_back_by_gdal(tmp_path):
    r = class_map()
    out = write_cog(r, tmp_path / "map.tif", classes=scheme_classes(DW))
    assert rat_path(out) == tmp_path / "map.tif.aux.xml" and rat_path(out).exists()
    info = gdalinfo_json(out)
    rat = gdal_rat(info)
    assert rat is not None and rat["tableType"] == "thematic"
    fields = {f["name"]: (f["type"], f["usage"]) for f in rat["fieldDefn"]}
    # GDAL codes: GFT_Integer 0 / GFT_String 2; GFU_PixelCount 1, Name 2, MinMax 5, Red 6, Green 7, Blue 8, Alpha 9
    assert fields == {"Value": (0, 5), "Count": (0, 1), "ClassName": (2, 2), "Red": (0, 6), "Green": (0, 7),
                      "Blue": (0, 8), "Alpha": (0, 9)}
    rows = [row["f"] for row in rat["row"]]
    assert [row[0] for row in rows] == DW.ids and [row[2] for row in rows] == DW.names
    counts = np.bincount(r.data.ravel(), minlength=256)
    assert [row[1] for row in rows] == [int(counts[i]) for i in DW.ids]
    water = rows[0]
    assert tuple(water[3:]) == (0x41, 0x9B, 0xDF, 255)  # #419bdf
    band = info["bands"][0]
    assert band["colorInterpretation"] == "Palette" and band["colorTable"]["entries"][1][:3] == [0x39, 0x7D, 0x49]
    assert band["noDataValue"] == 255


def test_rat_sidecar_is_replaced_with_the_map_and_refuses_bad_input(tmp_path):
    path = tmp_path / "m.tif"
    rat_path(path).write_text("<PAMDataset><stale/></PAMDataset>")
    write_cog(class_map(), path, classes={0: ("open water", "#0000ff"), 1: ("forest & trees", (0, 128, 0))})
    text = rat_path(path).read_text()
    assert "<stale/>" not in text and "forest &amp; trees" in text  # XML-escaped
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(ValueError, match="single-band uint8"):
        write_cog(GeoRaster(np.zeros((2, 4, 4), np.uint8), None, Affine.identity(), None, ("a", "b")), tmp_path / "x.tif",
                  classes={0: ("a", "#000000")})
    with pytest.raises(ValueError, match="0..254"):
        class_table_xml({255: ("nodata", "#000000")})
    with pytest.raises(ValueError):
        write_class_table(tmp_path / "y.tif", {})
    assert "Count" not in class_table_xml({3: ("x", "#010203")})


def test_write_cog_writes_tags(tmp_path):
    out = write_cog(class_map(), tmp_path / "t.tif", classes=scheme_classes(DW), tags={"LULC_BUNDLE": "toy"})
    with rasterio.open(out) as ds:
        assert ds.tags()["LULC_BUNDLE"] == "toy" and ds.colormap(1)[0][:3] == (0x41, 0x9B, 0xDF)


# ------------------------------------------------------------------------------------------ styles


def test_class_map_qml_is_a_paletted_style_with_every_class_name_and_colour():
    root = ET.fromstring(class_map_qml(scheme_classes(DW)).split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert root.tag == "qgis" and renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(int(e.get("value")), e.get("label"), e.get("color")) for e in entries] == \
        [(c.id, c.name, c.color) for c in DW.classes]
    assert all(e.get("alpha") == "255" for e in entries)


def test_confidence_qml_is_an_interpolated_ramp_over_0_to_1():
    root = ET.fromstring(confidence_qml().split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor"
    shader = renderer.find("rastershader/colorrampshader")
    assert shader.get("colorRampType") == "INTERPOLATED"
    items = [(float(i.get("value")), i.get("color")) for i in shader.findall("item")]
    assert items == [(float(v), c) for v, c in CONFIDENCE_RAMP] and items[0][0] == 0.0 and items[-1][0] == 1.0
    with pytest.raises(ValueError, match="increasing"):
        confidence_qml([(0.5, "#000000"), (0.2, "#ffffff")])


def test_sld_styles_parse_as_ogc_colormaps():
    ns = {"sld": "http://www.opengis.net/sld"}
    cls = ET.fromstring(class_map_sld(scheme_classes(DW)).split("\n", 1)[1])
    cmap = cls.find(".//sld:RasterSymbolizer/sld:ColorMap", ns)
    assert cmap.get("type") == "values"
    assert [(e.get("quantity"), e.get("label")) for e in cmap.findall("sld:ColorMapEntry", ns)] == \
        [(str(c.id), c.name) for c in DW.classes]
    conf = ET.fromstring(confidence_sld().split("\n", 1)[1])
    assert conf.find(".//sld:ColorMap", ns).get("type") == "ramp"
    with pytest.raises(ValueError, match="rrggbb"):
        class_map_qml({0: ("x", "blue")})


# -------------------------------------------------------------------------------------- provenance


def test_provenance_tags_carry_the_weights_sha256_run_policy_and_input(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "model.safetensors").write_bytes(b"weights" * 1000)
    decision = SimpleNamespace(to_tags=lambda: {"LULC_INPUT_OFFSET_DN": "1000"})
    policy = SimpleNamespace(tile=256, overlap=32, full_frame=False, runtime="onnxruntime", precision="fp32", decision=decision)
    prov = run_provenance(bundle, "toy", policy, earth_engine={"collection": "COPERNICUS/S2_HARMONIZED", "start": "2021-06-01",
                                                                "end": "2021-06-30", "cloud_threshold": 0.6, "unused": None},
                          now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    tags = prov.to_tags()
    assert tags["LULC_BUNDLE_SHA256"] == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert tags["LULC_BUNDLE"] == "toy" and tags["LULC_SOFTWARE_VERSION"] == software_version() != "unknown"
    assert (tags["LULC_RUN_TILE"], tags["LULC_RUN_OVERLAP"], tags["LULC_RUN_RUNTIME"], tags["LULC_RUN_PRECISION"]) == \
        ("256", "32", "onnxruntime", "fp32")
    assert tags["LULC_INPUT_OFFSET_DN"] == "1000" and tags["LULC_CREATED"] == "2026-01-02T03:04:05Z"
    assert tags["LULC_EE_COLLECTION"] == "COPERNICUS/S2_HARMONIZED" and tags["LULC_EE_CLOUD_THRESHOLD"] == "0.6"
    assert "LULC_EE_UNUSED" not in tags
    props = prov.to_properties()
    assert props["lulc:run"]["tile"] == 256 and props["lulc:earth_engine"]["end"] == "2021-06-30"
    full = run_provenance(bundle, "toy", SimpleNamespace(**{**vars(policy), "full_frame": True}))
    assert full.tile == 0 and full.to_tags()["LULC_RUN_FULL_FRAME"] == "yes"
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        run_provenance(tmp_path, "none", policy)


def test_input_metadata_from_tags_and_from_the_packs_scene_json(tmp_path, data_dir):
    prof = {"driver": "GTiff", "width": 4, "height": 4, "count": 1, "dtype": "uint16", "crs": "EPSG:32632",
            "transform": Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5000000.0)}
    with rasterio.open(tmp_path / "a.tif", "w", **prof) as ds:
        ds.write(np.ones((1, 4, 4), np.uint16))
        ds.update_tags(SENSING_TIME="2023-05-17T10:20:30Z", PRODUCT_ID="S2B_MSIL2A_20230517T102029_N0509_R065_T32TQM")
    meta = input_metadata(tmp_path / "a.tif")
    assert meta == {"date": "2023-05-17", "baseline": "05.09", "level": "L2A"}
    scene = input_metadata(data_dir / "samples" / "newzealand-2020-10-02" / "image_s2.tif")
    assert scene["date"] == "2020-10-02" and scene["level"] == "L1C" and "04.00" in scene["baseline"]
    assert input_metadata(tmp_path / "missing.tif") == {}


def test_file_sha256_follows_changes(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"a")
    first = file_sha256(f)
    f.write_bytes(b"bb")
    assert first == hashlib.sha256(b"a").hexdigest() and file_sha256(f) == hashlib.sha256(b"bb").hexdigest()


# -------------------------------------------------------------------------------------------- STAC


def _prov(**kw) -> Provenance:
    base = dict(bundle="default", bundle_sha256="ab" * 32, software_version="0.1.0", tile=256, overlap=32, full_frame=False,
                runtime="torch", precision="fp32", input_tags={"LULC_INPUT_LEVEL": "L1C"},
                input_meta={"date": "2020-10-02", "level": "L1C", "baseline": "02.09"}, created="2026-01-02T03:04:05Z")
    return Provenance(**{**base, **kw})


def _extension_fields_ok(d: dict, folder: Path) -> None:
    """The four extensions' fields, checked one by one against their v2.0.0/v2.0.0/v1.1.0/v2.1.0 schemas' rules."""
    assert sorted(d["stac_extensions"]) == sorted(EXTENSIONS.values())
    p = d["properties"]
    assert re.fullmatch(r"EPSG:\d+", p["proj:code"]) and len(p["proj:shape"]) == 2
    assert all(isinstance(v, int) and v > 0 for v in p["proj:shape"])
    assert len(p["proj:transform"]) in (6, 9) and all(isinstance(v, float) for v in p["proj:transform"])
    for key, asset in d["assets"].items():
        f = folder / asset["href"]
        assert asset["href"].startswith("./") and f.exists(), key
        assert re.fullmatch(r"[0-9a-f]+", asset["file:checksum"]) and asset["file:checksum"] == \
            "1220" + hashlib.sha256(f.read_bytes()).hexdigest()
        assert asset["file:size"] == f.stat().st_size
        for band in asset.get("raster:bands", []):
            assert band["data_type"] in ("uint8", "float32") and isinstance(band["nodata"], (int, float))
    classes = d["assets"]["map"]["classification:classes"]
    assert len({c["value"] for c in classes}) == len(classes)
    for c in classes:
        assert isinstance(c["value"], int) and re.fullmatch(r"[0-9A-Za-z_-]+", c["name"])
        assert c.get("nodata") or re.fullmatch(r"[0-9A-Fa-f]{6}", c["color_hint"])


def test_map_sidecars_write_styles_and_a_stac_item_that_validates_offline(tmp_path):
    import pystac

    r = class_map()
    m = write_cog(r, tmp_path / "map.tif", classes=scheme_classes(DW))
    conf = write_cog(GeoRaster(np.full((1, 40, 50), 0.7, np.float32), r.crs, r.transform, 0.0, ("confidence",)),
                     tmp_path / "conf.tif")
    item_path = write_map_sidecars(m, scheme_classes(DW), _prov(), confidence_path=conf, sld=True)
    assert item_path == tmp_path / "map.json"
    for name in ("map.qml", "map.sld", "conf.qml", "conf.sld"):
        assert (tmp_path / name).exists(), name
    d = json.loads(item_path.read_text())
    assert d["type"] == "Feature" and d["id"] == "map" and not [ln for ln in d["links"] if ln["rel"] == "self"]
    assert str(tmp_path) not in item_path.read_text()  # relative hrefs only: the folder can move
    _extension_fields_ok(d, tmp_path)
    assert d["properties"]["proj:code"] == "EPSG:32760" and d["properties"]["proj:shape"] == [40, 50]
    assert d["properties"]["datetime"] == "2020-10-02T00:00:00Z" and d["properties"]["lulc:bundle_sha256"] == "ab" * 32
    assert d["properties"]["lulc:input"]["baseline"] == "02.09" and d["properties"]["lulc:run"]["overlap"] == 32
    names = [c["title"] for c in d["assets"]["map"]["classification:classes"] if not c.get("nodata")]
    assert names == DW.names
    assert {k: v["roles"] for k, v in d["assets"].items()} == {
        "map": ["data"], "confidence": ["data", "confidence"], "attribute_table": ["metadata"], "style": ["style"],
        "style_sld": ["style"], "confidence_style": ["style"], "confidence_style_sld": ["style"]}
    lon0, lat0, lon1, lat1 = d["bbox"]
    assert 177.7 < lon0 < lon1 < 177.8 and -39.0 < lat0 < lat1 < -38.9  # the pack's NZ grid origin
    item = pystac.read_file(str(item_path))
    assert validate_core(item) == ["https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"]
    assert Path(item.assets["map"].get_absolute_href()) == m.resolve()


def test_core_validation_catches_a_broken_item(tmp_path):
    import pystac

    m = write_cog(class_map(), tmp_path / "map.tif", classes=scheme_classes(DW))
    d = json.loads(write_map_sidecars(m, scheme_classes(DW), _prov()).read_text())
    d["bbox"] = "everywhere"
    with pytest.raises(pystac.errors.STACValidationError):
        validate_core(d)


def test_probabilities_asset_and_composite_dates(tmp_path):
    r = class_map()
    m = write_cog(r, tmp_path / "m.tif", classes=scheme_classes(DW))
    probs = GeoRaster(np.full((3, 40, 50), 125, np.uint8), r.crs, r.transform, 255, ("water", "trees", "grass"))
    p = write_cog(probs, tmp_path / "p.tif")
    prov = _prov(input_meta={}, earth_engine={"collection": "C", "start": "2021-06-01", "end": "2021-06-30"})
    item = map_item(m, scheme_classes(DW), prov, probabilities_path=p)
    d = json.loads(write_item(item, tmp_path / "m.json").read_text())
    a = d["assets"]["probabilities"]
    assert a["lulc:band_names"] == ["water", "trees", "grass"] and len(a["raster:bands"]) == 3
    assert a["raster:bands"][0]["scale"] == pytest.approx(1 / 250) and a["raster:bands"][0]["nodata"] == 255
    props = d["properties"]
    assert props["datetime"] is None and props["start_datetime"] == "2021-06-01T00:00:00Z"
    assert props["end_datetime"] == "2021-06-30T23:59:59Z" and props["lulc:datetime_source"] == "composite date range"
    validate_core(d)


def test_catalog_links_the_items_and_validates(tmp_path):
    import pystac

    paths = []
    for i in range(2):
        m = write_cog(class_map(seed=i), tmp_path / f"s{i}_classes.tif", classes=scheme_classes(DW))
        paths.append(write_map_sidecars(m, scheme_classes(DW), _prov()))
    cat_path = write_catalog(tmp_path, paths, catalog_id="lulc-run", description="two maps")
    cat = pystac.read_file(str(cat_path))
    assert isinstance(cat, pystac.Catalog) and sorted(i.id for i in cat.get_items()) == ["s0_classes", "s1_classes"]
    assert str(tmp_path) not in cat_path.read_text()
    validate_core(cat)
