"""``trainer predict`` outputs (issue 20): per-class probabilities written window by window, the class map's RAT,
styles, provenance tags and STAC Item; batch Catalogs; the Dask engine's tags and RAT; --probabilities refused on Dask."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.io.outputs import OutputError
from core.io.raster import rat_path
from core.products.stac import EXTENSIONS, validate_core
from tests.conftest import make_raster
from tests.core.test_map_outputs import gdal_rat, gdalinfo_json

TOY_SCHEME = {"name": "toy_three", "title": "Toy three", "ignore_index": 255, "classes": [
    {"id": 0, "name": "open water", "color": "#1f78b4"},
    {"id": 1, "name": "forest", "color": "#33a02c"},
    {"id": 2, "name": "built-up", "color": "#e31a1c"},
]}


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """A 3-class U-Net bundle (random weights) on the 9 bands, with its own class scheme (names with spaces)."""
    import torch

    from models.bundle import ModelCard, save_bundle
    from models.registry import create_model

    torch.manual_seed(0)
    bands = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]
    card = ModelCard(name="tiny", arch="unet", encoder="resnet18", bands=bands, mean=[1500.0] * 9, std=[800.0] * 9,
                     classes=TOY_SCHEME, tile=64)
    return save_bundle(create_model("unet", "resnet18", in_channels=9, num_classes=3), card,
                       tmp_path_factory.mktemp("b") / "tiny")


@pytest.fixture
def scene(tmp_path) -> Path:
    from core.io.raster import write_cog

    r = make_raster(height=96, width=160, seed=1)
    r.data[:, :5, :7] = 0  # a nodata corner
    return write_cog(r, tmp_path / "scene.tif")


def test_predict_writes_named_probabilities_window_by_window_and_every_sidecar(tiny_bundle, scene, tmp_path):
    from trainer.predict import predict

    out = tmp_path / "out"
    # tile 64, overlap 16 on 96 x 160 px: 3 x 4 tiles, so the outputs are assembled from many windows
    predict(str(tiny_bundle), str(scene), str(out / "map.tif"), confidence=str(out / "conf.tif"),
            probabilities=str(out / "probs.tif"), tile=64, overlap=16, batch_size=2, quiet=True)
    with rasterio.open(out / "map.tif") as m, rasterio.open(out / "conf.tif") as c, rasterio.open(out / "probs.tif") as p:
        cls, conf, tags = m.read(1), c.read(1), m.tags()
        probs = p.read()
        assert (p.count, p.dtypes[0], p.nodata) == (3, "uint8", 255)
        assert p.descriptions == ("open water", "forest", "built-up")
        assert p.tags()["LULC_PROBABILITY_SCALE"] == "250" and p.tags()["LULC_BUNDLE"] == "tiny"
        assert p.crs == m.crs and p.transform == m.transform
    nodata = cls == 255
    assert nodata[:5, :7].all() and nodata.sum() == 35
    assert (probs[:, nodata] == 255).all() and (probs[:, ~nodata] <= 250).all()
    # the stored probabilities are the ones behind the class map and the confidence, pixel by pixel
    valid = probs[:, ~nodata].astype(int)
    assert (valid[cls[~nodata], np.arange(valid.shape[1])] == valid.max(axis=0)).all()
    np.testing.assert_allclose(valid.max(axis=0) / 250, conf[~nodata], atol=0.5 / 250 + 1e-6)
    np.testing.assert_allclose(valid.sum(axis=0) / 250, 1.0, atol=3 * 0.5 / 250 + 1e-6)
    # provenance tags: the weights' sha256 and the run policy
    assert tags["LULC_BUNDLE_SHA256"] == hashlib.sha256((tiny_bundle / "model.safetensors").read_bytes()).hexdigest()
    assert (tags["LULC_RUN_TILE"], tags["LULC_RUN_OVERLAP"], tags["LULC_RUN_RUNTIME"], tags["LULC_RUN_PRECISION"]) == \
        ("64", "16", "torch", "fp32")
    assert tags["LULC_INPUT_OFFSET_DN"] in ("0", "1000")
    # the RAT names the bundle's own classes, with the pixel counts of the map
    rat = gdal_rat(gdalinfo_json(out / "map.tif"))
    rows = [r["f"] for r in rat["row"]]
    assert [r[2] for r in rows] == ["open water", "forest", "built-up"]
    assert [r[1] for r in rows] == [int((cls == k).sum()) for k in range(3)]
    # sidecars: styles and a STAC Item listing every raster
    assert {p.name for p in out.iterdir()} == {"map.tif", "map.tif.aux.xml", "map.qml", "map.json", "conf.tif", "conf.qml",
                                               "probs.tif"}
    item = json.loads((out / "map.json").read_text())
    assert set(EXTENSIONS.values()) == set(item["stac_extensions"])
    assert {"map", "confidence", "probabilities", "attribute_table", "style", "confidence_style"} == set(item["assets"])
    assert item["assets"]["probabilities"]["lulc:band_names"] == ["open water", "forest", "built-up"]
    assert [c["name"] for c in item["assets"]["map"]["classification:classes"]] == ["open_water", "forest", "built-up", "no_data"]
    assert item["properties"]["lulc:bundle_sha256"] == tags["LULC_BUNDLE_SHA256"]
    validate_core(item)


def test_probability_output_is_refused_before_any_work_when_it_collides(tiny_bundle, scene, tmp_path):
    from trainer.predict import predict

    with pytest.raises(OutputError, match="same file"):
        predict(str(tiny_bundle), str(scene), str(tmp_path / "m.tif"), probabilities=str(tmp_path / "m.tif"), quiet=True)
    with pytest.raises(OutputError, match="input file"):
        predict(str(tiny_bundle), str(scene), str(tmp_path / "m.tif"), probabilities=str(scene), quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_batch_predict_writes_a_catalog_of_its_items(tiny_bundle, tmp_path):
    import pystac

    from core.io.raster import write_cog
    from trainer.predict import predict_many

    ins = tmp_path / "in"
    for i in range(2):
        write_cog(make_raster(height=64, width=64, seed=i), ins / f"s{i}.tif")
    assert predict_many(str(tiny_bundle), [str(ins)], str(tmp_path / "maps"), probabilities=str(tmp_path / "maps"),
                        tile=64, overlap=16) == 0
    maps = tmp_path / "maps"
    assert (maps / "s0_probabilities.tif").exists() and rat_path(maps / "s1_classes.tif").exists()
    cat = pystac.read_file(str(maps / "catalog.json"))
    items = sorted(cat.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == ["s0_classes", "s1_classes"]
    assert all("probabilities" in i.assets for i in items)
    validate_core(cat)


def test_cli_refuses_probabilities_on_the_dask_engine_in_one_line(tiny_bundle, scene, tmp_path, capsys):
    from trainer.cli import main

    code = main(["predict", "--checkpoint", str(tiny_bundle), "--input", str(scene), "--output", str(tmp_path / "m.tif"),
                 "--engine", "dask", "--probabilities", str(tmp_path / "p.tif")])
    err = capsys.readouterr().err
    assert code == 2 and "--probabilities is not available with --engine dask" in err and "Traceback" not in err
    assert not (tmp_path / "m.tif").exists() and not (tmp_path / "p.tif").exists()


@pytest.mark.parametrize("suffix", [".tif", ".vrt"])
def test_dask_outputs_carry_provenance_tags_and_a_rat(tmp_path, suffix):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from core.inference.block_sources import RasterSource
    from core.inference.blocks import predict_distributed
    from core.io.raster import write_cog
    from tests.conftest import S2_BANDS9, toy_policy
    from tests.core.test_distributed import ToyFactory

    src = write_cog(make_raster(height=100, width=120, seed=2), tmp_path / "in.tif")
    names = {0: "a", 1: "b", 2: "c", 3: "d"}
    colors = {0: "#000000", 1: "#ff0000", 2: "#00ff00", 3: "#0000ff"}
    out = tmp_path / f"map{suffix}"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        predict_distributed(RasterSource(str(src), tuple(S2_BANDS9)), ToyFactory(), out, num_classes=4, colormap=colors,
                            policy=toy_policy(64, 16, 4), block_size=48, client=client, tags={"LULC_BUNDLE": "toy"},
                            class_names=names)
    info = gdalinfo_json(out)
    assert info["metadata"][""]["LULC_BUNDLE"] == "toy"
    rat = gdal_rat(info)
    assert [r["f"][1] for r in rat["row"]] == ["a", "b", "c", "d"]  # Value, ClassName, R, G, B, A (no counts)
    assert rat_path(out).exists() == (suffix == ".tif")
