"""Change between two dates (core.products.change) on the Hungary time series of the sample pack."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from core.classes import get_scheme
from core.errors import GridMismatchError
from core.io.raster import GeoRaster, read_raster, write_cog
from core.products.change import change_between, transition_matrix
from core.sources.samples import load_labels

DW = get_scheme("dynamic_world")


def test_transition_matrix_counts_pairs_and_leaves_out_nodata():
    before = np.array([[0, 0, 1], [1, 2, 255]])
    after = np.array([[0, 1, 1], [2, 2, 2]])
    m, excluded = transition_matrix(before, after, 3, pixel_area_km2=0.5)
    assert excluded == 1
    np.testing.assert_array_equal(m, 0.5 * np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]]))


def test_change_between_two_hungary_dates_from_to_matrix_and_cog(tmp_path):
    spring, _ = load_labels("hungary-2020-04-24", "dw")
    summer, _ = load_labels("hungary-2020-08-12", "dw")
    res = change_between(spring, summer, DW.ids, DW.names, DW.colors, labels=("2020-04-24", "2020-08-12"))
    a, b = spring.data[0], summer.data[0]
    valid = (a != 255) & (b != 255)
    assert res.excluded_pixels == int((~valid).sum()) > 0  # the pack's 1-pixel nodata edge
    # areas: the EPSG:4326 grid's geodesic pixel areas (about 10 m x 10 m at 47.8 N)
    row_km2 = spring.pixel_area_m2() / 1e6
    assert 6.0e-5 < row_km2.mean() < 1.2e-4
    total = float((valid * row_km2[:, None]).sum())
    assert res.total_km2 == pytest.approx(total, rel=1e-12)
    # every cell is the area of the pixels going from class i to class j
    i, j = DW.ids.index(4), DW.ids.index(2)  # crops -> grass
    want = float((((a == 4) & (b == 2)) * row_km2[:, None]).sum())
    assert res.matrix_km2[i, j] == pytest.approx(want, rel=1e-12)
    # rows sum to the spring class areas, columns to the summer ones
    net = res.net_change()
    spring_area = [float((((a == k) & valid) * row_km2[:, None]).sum()) for k in DW.ids]
    np.testing.assert_allclose(net["2020-04-24_km2"], spring_area, rtol=1e-9)
    np.testing.assert_allclose(net["net_km2"], net["gain_km2"] - net["loss_km2"], atol=1e-12)
    assert abs(net["net_km2"].sum()) < 1e-9  # change moves area between classes only
    assert 0 < res.changed_km2 < res.total_km2 and res.changed.sum() == int((valid & (a != b)).sum())
    pct = res.matrix_table("%")
    assert pct.iloc[:-1, :-1].to_numpy().sum() == pytest.approx(100.0)
    tr = res.transitions()
    assert tr["km2"].is_monotonic_decreasing and tr["km2"].sum() == pytest.approx(res.total_km2)
    # the change map decodes back to both dates and keeps the grid
    path = write_cog(res.change_map, tmp_path / "change.tif")
    back = read_raster(path)
    assert back.same_grid(spring) and back.data.dtype == np.uint8
    code = back.data[0].astype(int)
    k = len(DW.ids)
    np.testing.assert_array_equal(np.asarray(DW.ids)[code[valid] // k], a[valid])
    np.testing.assert_array_equal(np.asarray(DW.ids)[code[valid] % k], b[valid])
    assert (code[~valid] == 255).all()


def test_change_refuses_maps_on_different_grids():
    one = GeoRaster(np.zeros((1, 4, 4), np.uint8), CRS.from_epsg(32633), Affine(10, 0, 0, 0, -10, 0), 255, ("c",))
    other = GeoRaster(np.zeros((1, 4, 4), np.uint8), CRS.from_epsg(32633), Affine(10, 0, 5, 0, -10, 0), 255, ("c",))
    with pytest.raises(GridMismatchError, match="same grid"):
        change_between(one, other, DW.ids, DW.names)


def test_change_refuses_unreferenced_maps_even_on_one_local_grid():
    """The DFC2020 patches share a 256 x 256 local grid but are different places: no change between them."""
    a, _ = load_labels("dfc2020-roi0000-validation-p0", "dw")
    b, _ = load_labels("dfc2020-roi0000-test-p0", "dw")
    assert a.crs is None and a.same_grid(b)
    with pytest.raises(GridMismatchError, match="no CRS"):
        change_between(a, b, DW.ids, DW.names)
