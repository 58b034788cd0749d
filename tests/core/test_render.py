"""Pictures: composites, agreement, confidence, PNGs."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.products.render import agreement_rgba, composite, confidence_rgba, panels_png, to_png
from tests.conftest import make_raster


def test_composite_stretches_and_hides_nodata():
    r = make_raster(height=40, width=50)
    r.data[:, 0, 0] = 0
    rgba = composite(r, ("B4", "B3", "B2"))
    assert rgba.shape == (40, 50, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0 and (rgba[1:, :, 3] == 255).all()
    assert rgba[..., 0].max() == 255 and rgba[1:, :, 0].min() == 0


def test_radar_composite_third_channel_is_the_vv_vh_ratio():
    from core.products.render import COMPOSITES

    r = make_raster(height=20, width=30, bands=["VV", "VH"])
    vv = np.linspace(-20, -5, 600, dtype=np.float32).reshape(20, 30)
    vh = np.full((20, 30), -18.0, dtype=np.float32)
    vh[:, :15] = -25.0  # the left half has a larger VV/VH ratio at the same VV
    r = type(r)(np.stack([vv, vh]), r.crs, r.transform, float("nan"), ("VV", "VH"))
    rgba = composite(r, COMPOSITES["Radar (VV, VH, VV/VH)"])
    ratio = vv - vh  # dB difference = 10 log10 of the linear ratio
    assert np.corrcoef(rgba[..., 2].ravel().astype(float), ratio.ravel())[0, 1] > 0.95
    assert not np.array_equal(rgba[..., 2], rgba[..., 0])


def test_agreement_and_confidence():
    a = agreement_rgba(np.array([[0, 1, 255]]), np.array([[0, 2, 1]]))
    assert tuple(a[0, 0]) == (26, 152, 80, 255) and tuple(a[0, 1]) == (215, 48, 39, 255) and a[0, 2, 3] == 0
    c = confidence_rgba(np.array([[0.0, 1.0]]), np.array([[True, False]]))
    assert tuple(c[0, 0, :3]) == (68, 1, 84) and c[0, 1, 3] == 0


def test_pngs_decode():
    img = Image.open(io.BytesIO(to_png(np.zeros((5, 6, 4), np.uint8))))
    assert img.size == (6, 5)
    both = Image.open(io.BytesIO(panels_png([("a", np.zeros((10, 10, 4), np.uint8)), ("b", np.zeros((10, 10, 4), np.uint8))])))
    assert both.size[0] == 28
