"""One model on one input gives one map, whichever entry point runs it (issue 16).

For both shipped bundles on an L1C and an L2A scene of the sample pack, the labels of the app's
service path (Explore, whole scene), ``python -m trainer predict``, ``predict --engine dask`` and the
analyst path (the Accuracy & area and Change pages) are identical on every pixel, and the level rule
gives the same verdict everywhere. Plus the policy's own rules: full-frame padding, the memory
bound, the card's tile/overlap, precision.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio

from core.config import REPO_ROOT
from core.inference.policy import (
    DEFAULT_BATCH_SIZE,
    FULL_FRAME_MAX_BYTES,
    RunPolicyError,
    full_frame_bytes,
    input_for_file,
    plan_run,
)
from core.inference.tiling import predict_full_frame
from core.sources.samples import get_scene, scene_decision

BUNDLES = ("default", "dynamicworld")
SCENES = ("newzealand-2020-10-02", "hungary-2020-08-12")  # L1C, L2A
DW_CARD = SimpleNamespace(name="dw", arch="dynamicworld", tile=256, preprocessing="dynamic_world", metrics={})


def _labels(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def maps(tmp_path_factory, data_dir) -> dict:
    """Labels per (bundle, scene, entry point), and the level verdicts."""
    pytest.importorskip("distributed")
    from app import analyst, services
    from app.state import AppState
    from trainer.predict import predict, predict_dask

    tmp = tmp_path_factory.mktemp("one-map")
    out = {}
    for name in BUNDLES:
        bundle_dir = str(REPO_ROOT / "models" / name)
        for sid in SCENES:
            scene = get_scene(sid, data_dir)
            src = scene.path / "image_s2.tif"
            state = AppState(scene_id=sid, aoi_mode="Whole scene", bundle_path=bundle_dir)
            app_map = services.run_analysis(state).prediction.classes
            cli = tmp / f"{name}_{sid}.tif"
            predict(bundle_dir, str(src), str(cli), quiet=True)
            dask = tmp / f"{name}_{sid}_dask.tif"
            predict_dask(bundle_dir, str(src), str(dask), workers=1)
            scene_map = analyst.predict_scene(sid, bundle_dir, str(data_dir)).classes
            card = services.get_bundle(bundle_dir).card
            out[name, sid] = {
                "app": app_map.data[0], "predict": _labels(cli), "dask": _labels(dask), "analyst": scene_map.data[0],
                "levels": {"app": app_map.meta["input_decision"].level, "predict": input_for_file(src, card).level},
                "warnings": {"app": app_map.meta["input_decision"].warnings, "predict": input_for_file(src, card).warnings},
                "policy": app_map.meta["run_policy"],
            }
    return out


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("sid", SCENES)
def test_every_entry_point_gives_the_same_map(maps, name, sid):
    m = maps[name, sid]
    ref = m["predict"]
    assert (ref != 255).mean() > 0.9  # a real map, not an empty one
    for entry in ("app", "dask", "analyst"):
        assert m[entry].shape == ref.shape
        differ = int((m[entry] != ref).sum())
        assert differ == 0, f"{name} on {sid}: {entry} differs from predict on {differ} of {ref.size} pixels"


def _verdict(warnings, sid: str) -> list[str]:
    """Warnings with the input's name left out: "scene <id>" in the app, the file name in the CLI."""
    return [w.replace(f"scene {sid}", "<input>").replace("image_s2.tif", "<input>") for w in warnings]


@pytest.mark.parametrize("name", BUNDLES)
def test_the_level_rule_gives_one_verdict(maps, name):
    for sid in SCENES:
        m = maps[name, sid]
        assert m["levels"]["app"] == m["levels"]["predict"] == get_scene(sid).level
        assert _verdict(m["warnings"]["app"], sid) == _verdict(m["warnings"]["predict"], sid)
    # Dynamic World (trained on L1C) runs on the L2A scene with a warning that names the domain shift
    if name == "dynamicworld":
        w = " ".join(maps[name, "hungary-2020-08-12"]["warnings"]["app"])
        assert "domain shift (L1C -> L2A" in w
        assert not maps[name, "newzealand-2020-10-02"]["warnings"]["app"]


def test_dynamic_world_runs_full_frame_and_the_unet_by_the_cards_tiles(maps):
    dw = maps["dynamicworld", SCENES[0]]["policy"]
    unet = maps["default", SCENES[0]]["policy"]
    assert dw.full_frame and dw.frame == (264, 264) and dw.decision.nodata_per_band and dw.precision == "fp32"
    assert not unet.full_frame and (unet.tile, unet.overlap) == (256, 32) and not unet.decision.nodata_per_band
    assert unet.precision == "fp32" and unet.batch_size == DEFAULT_BATCH_SIZE
    # each on its card's runtime, in the app as in predict (the maps above are equal): the port on OpenVINO where installed
    assert unet.runtime == "torch" and dw.runtime == ("openvino" if importlib.util.find_spec("openvino") else "torch")


@pytest.mark.parametrize("name", BUNDLES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_policy_names_the_runtime_the_bundle_runs(name, precision, monkeypatch):
    """The app hands the bundle itself to the predictor: what it runs when called is what the policy names."""
    from models.bundle import load_bundle

    path = REPO_ROOT / "models" / name
    b = load_bundle(path, precision=precision)
    assert plan_run(b.card, 64, 64, precision=precision).runtime == b.runtime
    assert b.runtime == ("openvino" if name == "dynamicworld" and precision == "fp32" and importlib.util.find_spec("openvino")
                         else "torch")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in ("openvino", "onnxruntime") else real(n, *a))
    assert plan_run(b.card, 64, 64, precision=precision).runtime == load_bundle(path, precision=precision).runtime == "torch"
    assert plan_run(b.card, 64, 64, runtime="onnxruntime").runtime == "onnxruntime"  # the user's choice stands


def test_full_frame_pads_to_even_never_to_a_square():
    seen = []

    def forward(x):
        seen.append(x.shape)
        return np.full((x.shape[0], 3, *x.shape[2:]), 1 / 3, np.float32)

    got = {}
    data = np.random.default_rng(0).uniform(1, 2, (2, 17, 5001)).astype(np.float32)
    predict_full_frame(lambda r, c, h, w: data[:, r:r + h, c:c + w], forward, lambda r, c, p, v: got.update(p=p, v=v),
                       height=17, width=5001, num_classes=3)
    assert seen == [(1, 2, 18, 5002)]
    assert got["p"].shape == (3, 17, 5001) and got["v"].all()
    p = plan_run(DW_CARD, 16, 5000)
    assert p.full_frame and p.frame == (16, 5000)


def test_full_frame_is_bounded_by_memory_not_shape():
    side = int((FULL_FRAME_MAX_BYTES / (full_frame_bytes("dynamicworld", 2, 2) / 4)) ** 0.5)
    assert plan_run(DW_CARD, side - 2, side - 2).full_frame
    big = plan_run(DW_CARD, side + 50, side + 50)
    assert not big.full_frame and big.tile == 256 and "GiB" in " ".join(big.reasons)
    assert not plan_run(DW_CARD, 264, 264, tile=128).full_frame  # a user's tile turns it off


def test_card_overlap_is_what_runs_and_the_user_overrides_it():
    card = SimpleNamespace(name="m", arch="unet", tile=128, preprocessing="standardize", metrics={"overlap": 16})
    p = plan_run(card, 500, 500)
    assert (p.tile, p.overlap) == (128, 16)
    q = plan_run(card, 500, 500, tile=256, overlap=64, batch_size=2)
    assert (q.tile, q.overlap, q.batch_size) == (256, 64, 2)


def test_bad_precision_or_tile_is_a_user_error():
    card = SimpleNamespace(name="m", arch="unet", tile=256, preprocessing="standardize", metrics={})
    with pytest.raises(RunPolicyError, match="precision"):
        plan_run(card, 10, 10, precision="auto")
    with pytest.raises(RunPolicyError, match="tile 100"):
        plan_run(card, 10, 10, tile=100, overlap=60)


def test_sample_file_gets_its_scene_level(data_dir):
    from models.card import read_card

    card = read_card(REPO_ROOT / "models" / "dynamicworld")
    sc = get_scene("hungary-2020-08-12", data_dir)
    assert input_for_file(sc.path / "image_s2.tif", card).level == scene_decision(sc, card).level == "L2A"


TILED_PREDICTORS = {"predict_tiled", "predict_full_frame"}


def _calls_and_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.Call):
            f = node.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def _literal_run_settings(path: Path) -> list[str]:
    """``tile=<int>``/``overlap=<int>``/``batch_size=<int>`` literals in calls, and such module constants."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in ("tile", "overlap", "batch_size") and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, int):
                    bad.append(f"{path.name}:{node.lineno} {kw.arg}={kw.value.value}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.args[-len(node.args.defaults):] if node.args.defaults else []
            pairs = list(zip(args, node.args.defaults, strict=True)) + list(zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True))
            for a, d in pairs:
                if a.arg in ("tile", "overlap") and isinstance(d, ast.Constant) and isinstance(d.value, int):
                    bad.append(f"{path.name}:{node.lineno} default {a.arg}={d.value}")
    return bad


def _project_modules():
    for pkg in ("app", "pages", "core", "models", "trainer"):
        yield from (REPO_ROOT / pkg).rglob("*.py")


def test_only_the_run_policy_calls_the_tiled_predictor():
    policy = REPO_ROOT / "core" / "inference" / "policy.py"
    tiling = REPO_ROOT / "core" / "inference" / "tiling.py"
    offenders = {str(p.relative_to(REPO_ROOT)): sorted(_calls_and_imports(p) & TILED_PREDICTORS)
                 for p in _project_modules() if p not in (policy, tiling)}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"call the run policy (core.inference.policy), not the tiled predictor: {offenders}"


def test_run_settings_are_decided_only_by_the_policy():
    policy = REPO_ROOT / "core" / "inference" / "policy.py"
    found = [b for p in _project_modules() if p != policy for b in _literal_run_settings(p)]
    assert not found, f"tile/overlap/batch size literals outside core.inference.policy: {found}"
