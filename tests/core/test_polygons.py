"""Polygon export with a minimum mapping unit (core.products.polygons)."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
from affine import Affine
from rasterio.crs import CRS

from core.io.raster import GeoRaster
from core.products.polygons import class_polygons, mmu_pixels, sieve_classes, write_polygons
from core.sources.samples import load_labels

UTM = CRS.from_epsg(32633)


def _map() -> GeoRaster:
    a = np.zeros((40, 40), np.uint8)  # 10 m pixels: 1 pixel = 0.01 ha
    a[:, 20:] = 1
    a[5:7, 5:7] = 1       # 4 px = 0.04 ha of class 1 inside class 0
    a[30:34, 25:35] = 2   # 40 px = 0.4 ha of class 2 inside class 1
    a[0, 39] = 255        # a nodata pixel
    return GeoRaster(a[None], UTM, Affine(10, 0, 400_000, 0, -10, 5_300_000), 255, ("class",))


def test_polygon_mmu_removes_small_patches_and_keeps_areas(tmp_path):
    m = _map()
    assert mmu_pixels(m, 0.1) == 10
    sieved = sieve_classes(m, 0.1).data[0]
    assert (sieved[5:7, 5:7] == 0).all()  # the 0.04 ha patch merged into its surroundings
    assert (sieved[30:34, 25:35] == 2).all() and sieved[0, 39] == 255
    layer = class_polygons(m, [0, 1, 2], ["water", "trees", "grass"], mmu_ha=0.1)
    assert sorted(layer.class_name.tolist()) == ["grass", "trees", "water"]
    assert layer.area_ha.min() >= 0.1
    by = dict(zip(layer.class_name.tolist(), layer.area_ha.tolist(), strict=True))
    assert by["grass"] == pytest.approx(0.40) and by["water"] == pytest.approx(8.0)
    assert sum(by.values()) == pytest.approx(16.0 - 0.01)  # everything but the nodata pixel
    keep_all = class_polygons(m, [0, 1, 2], ["water", "trees", "grass"], mmu_ha=0)
    assert len(keep_all) == 4 and keep_all.area_ha.min() == pytest.approx(0.04)
    path = write_polygons(layer, tmp_path / "lulc.gpkg")
    info = pyogrio.read_info(path)
    assert info["features"] == 3 and info["geometry_type"] == "Polygon" and "32633" in info["crs"]
    assert list(info["fields"]) == ["class_id", "class_name", "area_ha"]
    assert not list(tmp_path.glob(".*"))
    with pytest.raises(ValueError, match="GeoPackage"):
        write_polygons(layer, tmp_path / "lulc.shp")


def test_polygon_export_of_a_geographic_sample_map_uses_geodesic_areas(tmp_path):
    labels, scheme = load_labels("hungary-2020-08-12", "dw")
    layer = class_polygons(labels, scheme.ids, scheme.names, mmu_ha=0.5)
    valid_km2 = float(((labels.data[0] != 255) * (labels.pixel_area_m2()[:, None] / 1e6)).sum())
    # geodesic polygon areas vs per-row pixel areas: edges along parallels differ by a few ppm
    assert layer.area_ha.sum() / 100 == pytest.approx(valid_km2, rel=1e-4)
    assert layer.area_ha.min() >= 0.5 - 1e-6 or len(layer) == 1
    fewer = class_polygons(labels, scheme.ids, scheme.names, mmu_ha=0)
    assert len(fewer) > len(layer)
    write_polygons(layer, tmp_path / "hungary.gpkg")
    assert pyogrio.read_info(tmp_path / "hungary.gpkg")["features"] == len(layer)


def test_polygons_carry_the_maps_provenance_as_columns_and_layer_metadata(tmp_path):
    prov = {"LULC_BUNDLE": "default", "LULC_BUNDLE_SHA256": "ab" * 32, "LULC_SOFTWARE_VERSION": "0.1.0", "LULC_RUN_TILE": "256",
            "LULC_INPUT_NAME": "scene-a", "LULC_INPUT_DATE": "2020-08-12"}
    layer = class_polygons(_map(), [0, 1, 2], ["water", "trees", "grass"], mmu_ha=0.1)
    path = write_polygons(layer, tmp_path / "lulc.gpkg", prov)
    info = pyogrio.read_info(path)
    assert list(info["fields"]) == ["class_id", "class_name", "area_ha", *(k.lower() for k in prov)]
    assert info["layer_metadata"] == prov
    meta, _, _, fields = pyogrio.raw.read(path)
    col = dict(zip(meta["fields"], fields, strict=True))
    assert list(col["lulc_bundle_sha256"]) == ["ab" * 32] * 3 and list(col["lulc_input_date"]) == ["2020-08-12"] * 3


def test_trainer_polygons_takes_the_provenance_from_the_maps_tags(tmp_path):
    from core.io.raster import write_cog
    from trainer.cli import main

    tags = {"LULC_BUNDLE": "default", "LULC_BUNDLE_SHA256": "cd" * 32, "LULC_RUN_PRECISION": "fp32", "LULC_PROBABILITY_SCALE": "250"}
    m = write_cog(_map(), tmp_path / "map.tif", tags=tags)
    assert main(["polygons", "--map", str(m), "--out", str(tmp_path / "p.gpkg"), "--mmu", "0.1"]) == 0
    info = pyogrio.read_info(tmp_path / "p.gpkg")
    assert info["layer_metadata"] == {k: v for k, v in tags.items() if k != "LULC_PROBABILITY_SCALE"}
    assert {"lulc_bundle", "lulc_bundle_sha256", "lulc_run_precision"} <= set(info["fields"])
