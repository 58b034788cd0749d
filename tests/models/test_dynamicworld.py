"""The Dynamic World port reproduces the original: golden logits, the pack's labels, and its bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from models.bundle import load_bundle
from models.dynamicworld import DW_BANDS, DynamicWorldNet, convert_dynamicworld, state_dict_from_tf

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "models" / "dynamicworld"
SHARED = ROOT.parent / "shared"
SRC = SHARED / "models" / "dynamicworld"
DATA = SHARED / "data" / "samples"

needs_src = pytest.mark.skipif(not (SRC / "golden_io.npz").exists(), reason="../shared/models/dynamicworld not present")
needs_data = pytest.mark.skipif(not DATA.exists(), reason="sample pack not present")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE, precision="fp32")


def test_card_names_arch_preprocessing_licence_and_ships_licence_files():
    card = json.loads((BUNDLE / "card.json").read_text())
    assert card["arch"] == "dynamicworld" and card["preprocessing"] == "dynamic_world"
    assert card["bands"] == DW_BANDS
    assert "Apache-2.0" in card["license"] and "Brown" in card["license"]
    assert "Apache License" in (BUNDLE / "LICENSE").read_text()
    assert (BUNDLE / "NOTICE").read_text().strip()


@needs_src
def test_golden_logits(bundle):
    g = np.load(SRC / "golden_io.npz")
    for i in range(3):
        x = torch.from_numpy(g[f"input_{i}"]).permute(0, 3, 1, 2)  # already normalised, NHWC -> NCHW
        with torch.no_grad():
            y = bundle.model(x).permute(0, 2, 3, 1).numpy()
        ref = g[f"logits_{i}"]
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, atol=1e-4, rtol=0)
        assert (y.argmax(-1) == ref.argmax(-1)).mean() >= 0.9999


@needs_src
def test_converter_matches_committed_bundle(tmp_path):
    out = convert_dynamicworld(SRC, tmp_path / "dw")
    a, b = load_bundle(out).model.state_dict(), load_bundle(BUNDLE).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "LICENSE").exists() and (out / "NOTICE").exists()


def test_state_dict_from_tf_names_a_missing_variable():
    with pytest.raises(KeyError, match="conv2d/kernel"):
        state_dict_from_tf({})


def test_rejects_other_band_counts():
    with pytest.raises(ValueError, match="9 bands"):
        DynamicWorldNet(in_channels=10)


def _read(scene: str) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(DATA / scene / "image_s2.tif") as ds:
        names = list(ds.descriptions)
        x = ds.read([names.index(b) + 1 for b in DW_BANDS]).astype(np.float32)
    with rasterio.open(DATA / scene / "labels_dw.tif") as ds:
        ref = ds.read(1)
    return x, ref


@needs_data
@pytest.mark.parametrize(
    "scene", ["hungary-2021-02-18", "newzealand-2020-10-02", "slovenia-2015-07-31", "campeche-undated", "dfc2020-roi0000-validation-p0"]
)
def test_reproduces_pack_labels(bundle, scene):
    x, ref = _read(scene)
    with torch.no_grad():
        pred = bundle.model(bundle.normalize(torch.from_numpy(x[None]))).argmax(1)[0].numpy()
    valid = ref != 255
    assert (pred[valid] == ref[valid]).mean() >= 0.9999


@needs_data
def test_bf16_bundle_still_runs_float32(bundle):
    x, _ = _read("slovenia-2015-08-20")
    t = torch.from_numpy(x[None, :, :96, :96])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = bundle.model(bundle.normalize(t))
    assert y.dtype == torch.float32


@needs_data
def test_tiles_with_even_origins_match_the_whole_image_inside():
    """Fully convolutional with one 2x down-sampling: a tile at an even offset gives the whole
    image's logits away from its edges (the receptive field is well under 40 px)."""
    b = load_bundle(BUNDLE)
    x, _ = _read("hungary-2020-04-24")
    t = b.normalize(torch.from_numpy(x[None]))
    with torch.no_grad():
        whole = b.model(t)
        tile = b.model(t[:, :, 64:192, 100:228])
    np.testing.assert_allclose(tile[..., 40:-40, 40:-40].numpy(), whole[..., 104:152, 140:188].numpy(), atol=1e-4)


@needs_data
def test_predict_cli_path_reproduces_labels_next_to_partly_empty_pixels(tmp_path):
    """Hungary's edge row/column lack the 20 m bands only; the original saw the 10 m bands there."""
    from trainer.predict import predict

    scene = "hungary-2020-08-12"
    out = predict(str(BUNDLE), str(DATA / scene / "image_s2.tif"), str(tmp_path / "p.tif"), quiet=True)
    with rasterio.open(out) as a, rasterio.open(DATA / scene / "labels_dw.tif") as r:
        p, ref = a.read(1), r.read(1)
    assert ((p == 255) == (ref == 255)).all()
    valid = ref != 255
    assert (p[valid] == ref[valid]).mean() >= 0.9999
