"""ONNX export of a bundle and the ONNX Runtime / OpenVINO forward against PyTorch."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from core.config import DEFAULT_BUNDLE_DIR
from models.bundle import BundleError, load_bundle
from models.runtimes import ForwardFactory, OnnxForward, available_runtimes, export_onnx, load_forward, onnx_path_for

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(DEFAULT_BUNDLE_DIR, precision="fp32")


@pytest.fixture(scope="module")
def onnx_file(bundle, tmp_path_factory):
    return export_onnx(bundle, tmp_path_factory.mktemp("onnx") / "default.onnx")


@pytest.fixture(scope="module")
def batch(bundle, data_dir):
    """Two 256 x 256 windows of a sample scene in card band order, with a nodata corner."""
    with rasterio.open(data_dir / "samples" / "virginia-2016-01-12" / "image_s2.tif") as ds:
        names = list(ds.descriptions)
        idx = [names.index(b) + 1 for b in bundle.card.bands]
        x = np.stack([ds.read(idx, window=Window(c, r, 256, 256)) for r, c in ((0, 0), (512, 384))]).astype(np.float32)
    x[1, :, :20, :30] = np.nan
    return x


def _torch_logits(bundle, x):
    with torch.inference_mode():
        return bundle.model(bundle.normalize(torch.from_numpy(x))).numpy()


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_onnx_runtimes_match_pytorch(bundle, onnx_file, batch, runtime):
    if runtime not in available_runtimes():
        pytest.skip(f"{runtime} is not installed")
    f = OnnxForward(onnx_file, runtime, threads=1)
    ref = _torch_logits(bundle, batch)
    got = f.logits(batch)
    assert got.shape == ref.shape == (2, bundle.num_classes, 256, 256)
    assert np.abs(got - ref).max() < 1e-4
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    probs = f(batch)
    np.testing.assert_allclose(probs, bundle(batch), atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # dynamic batch and spatial size
    assert f(batch[:1, :, :64, :96]).shape == (1, bundle.num_classes, 64, 96)


def test_onnx_metadata_carries_the_card(bundle, onnx_file):
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_file), load_external_data=False).metadata_props}
    assert json.loads(meta["bands"]) == bundle.card.bands
    assert json.loads(meta["mean"]) == bundle.card.mean and json.loads(meta["std"]) == bundle.card.std
    assert meta["preprocessing"] == bundle.card.preprocessing
    assert list(json.loads(meta["class_names"]).values()) == bundle.card.class_names
    assert json.loads(meta["class_ids"]) == bundle.class_ids
    assert json.loads(meta["card"])["name"] == bundle.card.name
    f = OnnxForward(onnx_file, "onnxruntime")
    assert f.bands == bundle.card.bands and f.num_classes == bundle.num_classes
    with pytest.raises(BundleError, match="expected"):
        f(np.zeros((1, 3, 64, 64), np.float32))


def test_onnx_cache_and_factory(tmp_path, monkeypatch, onnx_file):
    monkeypatch.setenv("LULC_CACHE_DIR", str(tmp_path))
    if not (DEFAULT_BUNDLE_DIR / "model.onnx").exists():  # nothing exported yet in the empty cache
        with pytest.raises(BundleError, match="export-onnx"):
            onnx_path_for(DEFAULT_BUNDLE_DIR, export=False)
    factory = ForwardFactory(str(DEFAULT_BUNDLE_DIR), runtime="onnxruntime", threads=1, onnx_path=str(onnx_file))
    again = pickle.loads(pickle.dumps(factory))
    assert again == factory
    fwd = again()
    assert isinstance(fwd, OnnxForward) and fwd.path == onnx_file
    with pytest.raises(BundleError, match="unknown runtime"):
        load_forward(DEFAULT_BUNDLE_DIR, runtime="tensorrt")


def test_runtime_auto_measures_once_per_machine_and_picks_the_fastest_usable(tmp_path, monkeypatch):
    """``--runtime auto``: every installed runtime is timed against PyTorch fp32 once, then read from the cache."""
    import models.runtimes as rt

    monkeypatch.setenv("LULC_CACHE_DIR", str(tmp_path))
    calls = []
    real = rt.measure_runtimes

    def measure(bundle_dir, **kw):
        calls.append(bundle_dir)
        return real(bundle_dir, batch=1, tile=64, rounds=1, **kw)

    monkeypatch.setattr(rt, "measure_runtimes", measure)
    runtime, precision, rows = rt.choose_runtime(DEFAULT_BUNDLE_DIR)
    assert rows[0]["runtime"] == "torch" and rows[0]["precision"] == "fp32" and rows[0]["label_agreement"] == 1.0
    assert {r["runtime"] for r in rows} == set(available_runtimes())
    usable = [r for r in rows if r["usable"]]
    assert (runtime, precision) == max(((r["runtime"], r["precision"]) for r in usable),
                                       key=lambda k: next(r["images_s"] for r in usable if (r["runtime"], r["precision"]) == k))
    for r in rows:
        if r["runtime"] != "torch":  # fp32 ONNX runtimes reproduce the logits
            assert r["usable"] and r["max_abs_logit_diff"] < 1e-3
    assert rt.choose_runtime(DEFAULT_BUNDLE_DIR)[:2] == (runtime, precision) and len(calls) == 1  # cached
    assert (tmp_path / "runtime-choice.json").exists()


@pytest.mark.parametrize("content", ['{"broken": ', "[1, 2]", '"text"', "null", "{KEY: 5}", "{KEY: [{\"no\": 1}]}"])
def test_a_corrupt_runtime_choice_cache_is_measured_again(content, tmp_path, monkeypatch):
    """A damaged ``runtime-choice.json`` (truncated JSON, not an object, a damaged entry) is measured again and
    rewritten, never a crash."""
    import models.runtimes as rt

    monkeypatch.setenv("LULC_CACHE_DIR", str(tmp_path))
    path = tmp_path / "runtime-choice.json"
    key = f"{rt.bundle_checksum(DEFAULT_BUNDLE_DIR)}|{rt._machine_key()}|None"
    path.write_text(content.replace("KEY", json.dumps(key)))
    measured = [{"runtime": "torch", "precision": "fp32", "usable": True, "images_s": 1.0}]
    monkeypatch.setattr(rt, "measure_runtimes", lambda bundle_dir, **kw: measured)
    assert rt.choose_runtime(DEFAULT_BUNDLE_DIR)[:2] == ("torch", "fp32")
    assert json.loads(path.read_text())[key] == measured


DW_DIR = DEFAULT_BUNDLE_DIR.parent / "dynamicworld"


def test_dynamic_world_bundle_runs_its_cards_runtime_with_the_torch_labels(data_dir):
    """The port's card names OpenVINO: calling the bundle runs it there, with PyTorch fp32's labels."""
    if "openvino" not in available_runtimes():
        pytest.skip("openvino is not installed")
    from models.bundle import Bundle

    b = load_bundle(DW_DIR)
    assert b.card.runtime == "openvino" and b.runtime == "openvino"
    ref = load_bundle(DW_DIR, runtime="torch")
    assert ref.runtime == "torch" and load_forward(DW_DIR, runtime="torch").runtime == "torch"
    with rasterio.open(data_dir / "samples" / "virginia-2016-01-12" / "image_s2.tif") as ds:
        names = list(ds.descriptions)
        idx = [names.index(band) + 1 for band in b.bands]
        x = np.stack([ds.read(idx, window=Window(c, r, 128, 96)) for r, c in ((0, 0), (500, 300))]).astype(np.float32)
    p, q = b(x), ref(x)
    assert b._onnx is not None  # it really ran on OpenVINO
    assert p.shape == q.shape == (2, 9, 96, 128)
    assert float(np.abs(p - q).max()) < 1e-4 and (p.argmax(1) == q.argmax(1)).mean() >= 0.999
    np.testing.assert_allclose(b.logits(x), ref.logits(x), atol=1e-3, rtol=0)
    # bf16 and a bundle without a folder run on PyTorch; the U-Net's card names no runtime
    assert load_bundle(DW_DIR, precision="bf16").runtime == "torch"
    assert Bundle(ref.model, ref.card).runtime == "torch"
    assert load_bundle(DEFAULT_BUNDLE_DIR).runtime == "torch"
    with pytest.raises(BundleError, match="fp32 on the CPU"):
        Bundle(ref.model, ref.card, None, runtime="openvino")


def test_a_corrected_bundle_does_not_inherit_its_bases_runtime(tmp_path):
    """The card's runtime was measured on the base network; a corrected network runs on PyTorch."""
    from models.card import read_card
    from models.features import feature_count, save_corrected_bundle

    base = load_bundle(DW_DIR, runtime="torch")
    n_feat, k0 = feature_count(base.model), base.num_classes
    classes = {"name": "mine", "classes": [{"id": 0, "name": "a", "color": "#000000"}, {"id": 1, "name": "b", "color": "#ffffff"}]}
    correction = {"base_classes": k0, "base_temperature": 1.0, "base_class_names": base.card.class_names}
    out = save_corrected_bundle(base, np.zeros((2, n_feat + k0), np.float32), np.zeros(2, np.float32), tmp_path / "c",
                                classes=classes, correction=correction)
    assert read_card(out).runtime == "" and load_bundle(out).runtime == "torch"
