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
