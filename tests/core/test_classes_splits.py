"""Class schemes, crosswalks, spatial-block splits."""

from __future__ import annotations

import numpy as np
import pytest

from core.classes import (
    CROSSWALKS,
    DYNAMIC_WORLD,
    SCHEMES,
    colorize,
    common_scheme,
    get_crosswalk,
    get_scheme,
    harmonize,
)
from core.errors import SchemeError
from core.evaluation.comparison import Comparison
from core.splits import block_splits, chip_windows


def test_schemes_have_unique_ids_and_valid_colours():
    assert DYNAMIC_WORLD.names[0] == "water" and DYNAMIC_WORLD.num_classes == 9 and DYNAMIC_WORLD.is_contiguous
    assert get_scheme("esa_worldcover").num_classes == 11
    for s in SCHEMES.values():
        assert len(set(s.ids)) == len(s.ids)
        assert all(len(c) == 7 and c.startswith("#") for c in s.colors)
    with pytest.raises(SchemeError, match="dynamic_world"):
        get_scheme("corine")


def test_osm_crosswalk_to_dynamic_world():
    osm = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8], np.uint8)
    out = get_crosswalk("osm", "dynamic_world").apply(osm)
    names = [DYNAMIC_WORLD.names[i] if i != 255 else None for i in out]
    assert names == [None, "crops", "trees", "grass", "grass", "built", "shrub_and_scrub", "water", "flooded_vegetation"]


def test_every_crosswalk_maps_every_source_class():
    for (src, tgt), cw in CROSSWALKS.items():
        assert set(cw.mapping) == set(get_scheme(src).ids), (src, tgt)
        assert all(t is None or t in get_scheme(tgt).ids for t in cw.mapping.values())


def test_harmonize_maps_finer_onto_coarser():
    pred = np.array([0, 3, 6, 255], np.uint8)  # DW: water, flooded_vegetation, built, nodata
    water = np.array([1, 1, 0, 1], np.uint8)
    p, r, scheme, cw = harmonize(pred, "dynamic_world", water, "water")
    assert scheme.name == "water" and cw.source == "dynamic_world"
    np.testing.assert_array_equal(p, [1, 0, 0, 255])
    np.testing.assert_array_equal(r, water)
    assert common_scheme("dynamic_world", "dfc2020")[0].name == "dynamic_world"
    with pytest.raises(SchemeError):
        common_scheme("osm", "dfc2020")


def test_comparison_across_schemes():
    cmp = Comparison("dynamic_world", "osm")
    pred = np.array([[4, 1], [0, 255]], np.uint8)  # crops, trees, water, nodata
    ref = np.array([[1, 2], [0, 7]], np.uint8)  # farm, forest, unlabelled, water
    cmp.add(pred, ref)
    m = cmp.metrics()
    assert m.pixels == 2 and m.overall_accuracy == 1.0 and m.excluded_fraction == 0.5


def test_colorize_transparent_nodata():
    rgba = colorize(np.array([[0, 255]]), DYNAMIC_WORLD)
    assert tuple(rgba[0, 0]) == (0x41, 0x9B, 0xDF, 255) and rgba[0, 1, 3] == 0


def test_blocks_cover_the_scene_once_and_are_deterministic():
    blocks = block_splits("scene-a", 768, 1536, 256, seed=42)
    cover = np.zeros((768, 1536), int)
    for b in blocks:
        cover[b.row_off : b.row_off + b.height, b.col_off : b.col_off + b.width] += 1
    assert (cover == 1).all()
    splits = [b.split for b in blocks]
    assert splits.count("test") == 3 and splits.count("val") == 3 and splits.count("train") == 12
    assert blocks == block_splits("scene-a", 768, 1536, 256, seed=42)


def test_chips_stay_inside_their_block_so_splits_never_overlap():
    blocks = block_splits("s", 300, 520, 128, seed=0)
    owner = np.full((300, 520), "", object)
    for b in blocks:
        owner[b.row_off : b.row_off + b.height, b.col_off : b.col_off + b.width] = b.split
    for b in blocks:
        for r, c in chip_windows(b, 64, 32):
            assert (owner[r : r + 64, c : c + 64] == b.split).all()
    full = [b for b in blocks if b.height == 128 and b.width == 128][0]
    assert len(chip_windows(full, 64, 32)) == 9
    small = [b for b in blocks if b.height < 64]
    assert all(chip_windows(b, 64, 32) == [] for b in small)


def test_whole_scene_split_and_bad_fractions():
    assert {b.split for b in block_splits("d", 256, 256, 256, whole="val")} == {"val"}
    with pytest.raises(ValueError):
        block_splits("d", 256, 256, 128, val_fraction=0.6, test_fraction=0.5)


def test_from_index_inverts_to_index():
    osm = get_scheme("osm")
    ids = np.array([[0, 1, 5, 8]], np.uint8)
    back = osm.from_index(osm.to_index(ids))
    np.testing.assert_array_equal(back, ids)  # unlabelled (0) comes back as OSM's ignore id 0
    assert DYNAMIC_WORLD.from_index(np.array([255]))[0] == 255

