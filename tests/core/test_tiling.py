"""Tiled inference: exact cover, blending without seams, nodata, padding at the edges."""

from __future__ import annotations

import numpy as np
import pytest

from core.inference.tiling import TileGrid, blend_window, predict_tiled

K = 4


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def pointwise(weights: np.ndarray):
    return lambda x: softmax(np.einsum("kc,bchw->bkhw", weights, np.nan_to_num(x)))


def run(img, forward, tile, overlap, batch_size=3):
    c, h, w = img.shape
    out = np.full((K, h, w), -1.0, np.float32)
    count = np.zeros((h, w), int)
    valid = np.zeros((h, w), bool)

    def write(r, cc, p, v):
        hh, ww = v.shape
        out[:, r : r + hh, cc : cc + ww] = p
        count[r : r + hh, cc : cc + ww] += 1
        valid[r : r + hh, cc : cc + ww] = v

    predict_tiled(lambda r, cc, hh, ww: img[:, r : r + hh, cc : cc + ww], forward, write, height=h, width=w,
                  num_classes=K, tile=tile, overlap=overlap, batch_size=batch_size)
    return out, count, valid


@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [(300, 517, 64, 16), (300, 517, 64, 0), (200, 130, 128, 64), (50, 37, 64, 16), (256, 256, 256, 32), (1, 70, 32, 8)])
def test_tiled_equals_whole_for_pointwise_model(h, w, tile, overlap):
    rng = np.random.default_rng(1)
    img = rng.random((3, h, w)).astype(np.float32)
    fwd = pointwise(rng.random((K, 3)).astype(np.float32))
    out, count, _ = run(img, fwd, tile, overlap)
    assert (count == 1).all(), "every pixel is written exactly once"
    np.testing.assert_allclose(out, fwd(img[None])[0], atol=1e-5)


def test_blending_is_seam_free_for_a_convolutional_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), torch.nn.ReLU(),
        torch.nn.Conv2d(8, K, 3, padding=1, padding_mode="reflect"),
    ).eval()

    def fwd(x):
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(np.nan_to_num(x))), 1).numpy()

    rng = np.random.default_rng(2)
    img = rng.random((3, 160, 224)).astype(np.float32)
    whole = fwd(img[None])[0]
    blended, _, _ = run(img, fwd, 64, 16)
    hard, _, _ = run(img, fwd, 64, 0)
    # away from the raster's own border (where the network pads differently than the tiles)
    err_blend = np.abs(blended - whole)[:, 4:-4, 4:-4]
    err_hard = np.abs(hard - whole)[:, 4:-4, 4:-4]
    # receptive field 7 px, overlap 16 px: tile edges get tiny weights, so the blend stays close to the whole-image result
    assert err_blend.max() < 1e-3
    # without overlap the tile edges differ (reflect padding instead of neighbours): a visible seam
    assert err_hard.max() > 10 * err_blend.max()


def test_nodata_pixels_are_flagged_invalid():
    rng = np.random.default_rng(3)
    img = rng.random((2, 100, 90)).astype(np.float32)
    img[1, 10:20, 30:45] = np.nan
    _, _, valid = run(img, pointwise(rng.random((K, 2)).astype(np.float32)), 32, 8)
    assert (~valid).sum() == 150 and not valid[15, 40] and valid[25, 40]


def test_blend_window_is_partition_of_unity_and_positive():
    t, o = 64, 16
    w = blend_window(t, o)[t // 2]
    s = t - o
    np.testing.assert_allclose(w[s:] + w[:o], 1.0, atol=1e-6)
    assert w.min() > 0 and w.max() == 1.0


def test_grid_and_argument_errors():
    g = TileGrid(1000, 700, 256, 32)
    assert g.stride == 224 and g.n_rows == 5 and g.n_cols == 3 and g.padded_width >= 700
    with pytest.raises(ValueError, match="overlap"):
        TileGrid(100, 100, 64, 40)
    with pytest.raises(ValueError, match="expected"):
        predict_tiled(lambda r, c, h, w: np.zeros((1, h, w), np.float32), lambda x: np.zeros((1, 2, 3, 3)),
                      lambda *a: None, height=10, width=10, num_classes=K, tile=32, overlap=0, batch_size=8)
