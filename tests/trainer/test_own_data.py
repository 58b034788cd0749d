"""Train on your own data (issue 18), in CI size: image + labels + class file from a config, 1 epoch, few batches."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine

from core.config import REPO_ROOT
from trainer.config import load_config

BANDS = ["B2", "B3", "B4", "B8"]


def _write(path, data, transform, names=None, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=data.dtype.name, transform=transform, crs="EPSG:32633", nodata=nodata) as ds:
        ds.write(data)
        for i, n in enumerate(names or [], start=1):
            ds.set_band_description(i, n)
    return path


@pytest.fixture
def own_config(tmp_path):
    rng = np.random.default_rng(1)
    lab = np.zeros((1, 128, 128), np.uint8)
    lab[0, :, :64], lab[0, :, 64:] = 1, 2
    img = rng.integers(300, 3000, size=(4, 128, 128)).astype(np.uint16)
    img[3, :, 64:] += 2000
    t = Affine(10, 0, 500000, 0, -10, 5000000)
    _write(tmp_path / "image.tif", img, t, BANDS, nodata=0)
    # labels on a coarser grid: reprojected onto the image grid with nearest neighbour
    _write(tmp_path / "labels.tif", lab[:, ::2, ::2].copy(), Affine(20, 0, 500000, 0, -20, 5000000), nodata=0)
    (tmp_path / "classes.csv").write_text("id,name,color\n1,Meadow,#88b053\n2,Town,#c4281b\n0,nodata,#000000\n")
    cfg = {"name": "own", "seed": 3,
           "data": {"bands": BANDS, "files": [{"image": str(tmp_path / "image.tif"), "labels": str(tmp_path / "labels.tif"),
                                               "scheme": str(tmp_path / "classes.csv"), "level": "L2A"}],
                    "block_size": 32, "chip_size": 32, "train_stride": 32, "batch_size": 4, "val_fraction": 0.2, "test_fraction": 0.2},
           "trainer": {"max_epochs": 1, "limit_train_batches": 2, "progress_bar": False, "log_every_n_steps": 1},
           "output": {"dir": str(tmp_path / "run")}}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fit_on_files_writes_the_files_scheme_in_the_card(own_config):
    r = subprocess.run([sys.executable, "-m", "trainer", "fit", "--config", str(own_config)], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "nearest neighbour" in r.stderr
    card = json.loads((own_config.parent / "run" / "bundle" / "card.json").read_text())
    assert [c["name"] for c in card["classes"]["classes"]] == ["meadow", "town"] and card["classes"]["name"] == "classes"
    assert card["sensor"] == "S2" and card["gsd_m"] == 10.0


def test_bad_label_values_are_one_sentence(own_config, tmp_path):
    with rasterio.open(tmp_path / "labels.tif", "r+") as ds:
        ds.write(np.full((1, 64, 64), 9, np.uint8))
    r = subprocess.run([sys.executable, "-m", "trainer", "fit", "--config", str(own_config)], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=600)
    assert r.returncode == 2 and "value(s) 9 that are not classes" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "bundle").exists()


def test_shipped_own_data_configs_load():
    for name in ("wales.yaml", "fusion.yaml"):
        cfg = load_config(REPO_ROOT / "trainer" / "configs" / name)
        assert cfg.data.bands
    assert {"VV", "VH"} <= set(load_config(REPO_ROOT / "trainer" / "configs" / "fusion.yaml").data.bands)
    assert load_config(REPO_ROOT / "trainer" / "configs" / "wales.yaml").data.files[0].scheme.endswith(".json")


def test_sweep_writes_csv_and_markdown(own_config, tmp_path):
    r = subprocess.run([sys.executable, "-m", "trainer", "sweep", "--config", str(own_config), "--grid", "loss.name=ce_dice,focal",
                        "--out", str(tmp_path / "sweep")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    import pandas as pd

    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(table["loss.name"]) == ["ce_dice", "focal"] and {"val_miou", "test_miou", "fit_seconds"} <= set(table.columns)
    assert (tmp_path / "sweep" / "sweep.md").read_text().startswith("| loss.name |")


def test_grid_parsing_and_bad_grid():
    from trainer.sweep import combinations, parse_grid

    g = parse_grid(["loss.name=ce_dice,focal", "optim.lr=1e-3,3e-4"])
    assert len(combinations(g)) == 4 and combinations(g)[0] == ["loss.name=ce_dice", "optim.lr=1e-3"]
    with pytest.raises(ValueError, match="must look like"):
        parse_grid(["loss.name"])


def test_focal_loss_is_weighted_ce_at_gamma_0():
    import torch

    from trainer.module import SegmentationTask

    cfg = load_config(REPO_ROOT / "tests" / "trainer" / "smoke.yaml", ["loss.name=focal", "loss.gamma=0"]).to_dict()
    task = SegmentationTask(cfg, 4, ["a", "b", "c"], [1.0, 2.0, 0.5])
    logits, y = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    y[0, 0, 0] = 255
    assert torch.allclose(task.focal(logits, y), task.ce(logits, y), atol=1e-5)
    task.gamma = 2.0
    assert task.focal(logits, y) < task.ce(logits, y)


def test_balanced_chips_centre_on_each_class():
    from core.splits import SplitBlock
    from trainer.data import SceneData, balanced_chips

    t = np.zeros((64, 64), np.uint8)
    t[60:, 60:] = 1  # a rare class in one corner
    s = SceneData("x", np.zeros((1, 64, 64), np.float32), t, [SplitBlock("x", 0, 0, 64, 64, "train")])
    items = balanced_chips([s], "train", 32, 5, seed=0)
    assert len(items) == 10
    rare = [(r, c) for _, r, c in items if (t[r : r + 32, c : c + 32] == 1).any()]
    assert len(rare) >= 5 and all(0 <= r <= 32 and 0 <= c <= 32 for _, r, c in items)


def test_training_started_twice_is_refused(tmp_path):
    import os

    from trainer.fit import RunLockError, run_lock

    with run_lock(tmp_path / "run"):
        with pytest.raises(RunLockError, match="already writing to"):
            with run_lock(tmp_path / "run"):
                pass
    assert not (tmp_path / "run" / ".fit.lock").exists()
    (tmp_path / "run" / ".fit.lock").write_text(str(2**22 + os.getpid() % 1000))  # a process that is gone: taken over
    with run_lock(tmp_path / "run"):
        pass


def test_init_from_a_bundle_with_other_classes_gets_a_new_head(tmp_path):
    import torch
    from safetensors.torch import save_file

    from trainer.module import SegmentationTask

    cfg = load_config(REPO_ROOT / "tests" / "trainer" / "smoke.yaml").to_dict()
    old = SegmentationTask(cfg, 4, ["a", "b", "c"], [1.0, 1.0, 1.0])
    (tmp_path / "b").mkdir()
    save_file({k: v.contiguous() for k, v in old.model.state_dict().items()}, str(tmp_path / "b" / "model.safetensors"))
    cfg["model"]["init_from"] = str(tmp_path / "b")
    new = SegmentationTask(cfg, 4, ["x", "y"], [1.0, 1.0])
    enc = "encoder.conv1.weight"
    assert torch.equal(new.model.state_dict()[enc], old.model.state_dict()[enc])
    assert new.model.state_dict()["segmentation_head.0.weight"].shape[0] == 2


def test_frozen_encoder_keeps_its_weights_and_statistics_while_the_decoder_learns(own_config, tmp_path):
    """model.freeze_encoder with init_from: after a 1-epoch fit the bundle's encoder (weights and BatchNorm running statistics)
    equals the starting network's, the decoder does not; the card's training config says the encoder was frozen."""
    import torch
    from safetensors.torch import load_file, save_file

    from trainer.module import SegmentationTask

    cfg = load_config(own_config).to_dict()
    start = SegmentationTask(cfg, 4, ["meadow", "town"], [1.0, 1.0]).model.state_dict()
    save_file({k: v.contiguous() for k, v in start.items()}, str(tmp_path / "start.safetensors"))
    raw = yaml.safe_load(own_config.read_text())
    raw["model"] = {"init_from": str(tmp_path / "start.safetensors"), "freeze_encoder": True}
    raw["trainer"]["limit_train_batches"] = 4
    own_config.write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "trainer", "fit", "--config", str(own_config)], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    bundle = tmp_path / "run" / "bundle"
    after = load_file(str(bundle / "model.safetensors"))  # float16 on disk: compare with the start rounded the same way
    enc = [k for k in start if k.startswith("encoder.") and start[k].is_floating_point()]
    dec = [k for k in start if k.startswith("decoder.") and k.endswith(".weight")]
    assert any("running_mean" in k for k in enc)
    assert all(torch.equal(after[k].float(), start[k].to(after[k].dtype).float()) for k in enc)
    assert not all(torch.equal(after[k].float(), start[k].to(after[k].dtype).float()) for k in dec)
    card = json.loads((bundle / "card.json").read_text())
    assert card["training"]["config"]["model"]["freeze_encoder"] is True


def test_freeze_encoder_without_starting_weights_is_refused(own_config):
    with pytest.raises(ValueError, match="model.freeze_encoder needs model.init_from or model.encoder_weights"):
        load_config(own_config, ["model.freeze_encoder=true"])


def test_pretrained_encoder_weights_from_a_local_file(tmp_path):
    """model.encoder_weights: a local .safetensors of an encoder's state dict is loaded into the encoder (decoder untouched);
    one that does not fit (another band count) is refused naming the mismatch."""
    import torch
    from safetensors.torch import save_file

    from models.registry import create_model
    from trainer.module import SegmentationTask

    torch.manual_seed(5)
    donor = create_model("unet", "resnet18", in_channels=4, num_classes=3).encoder.state_dict()
    save_file({k: v.contiguous() for k, v in donor.items()}, str(tmp_path / "encoder.safetensors"))
    cfg = load_config(REPO_ROOT / "tests" / "trainer" / "smoke.yaml", [f"model.encoder_weights={tmp_path / 'encoder.safetensors'}",
                                                                        "model.freeze_encoder=true"]).to_dict()
    task = SegmentationTask(cfg, 4, ["a", "b"], [1.0, 1.0])
    own = task.model.encoder.state_dict()
    assert all(torch.equal(own[k], donor[k]) for k in donor)
    assert not any(p.requires_grad for p in task.model.encoder.parameters()) and any(p.requires_grad for p in task.model.decoder.parameters())
    task.train()
    assert not task.model.encoder.training and task.model.decoder.training  # BatchNorm statistics of the encoder stay
    with pytest.raises(ValueError, match="do not fit"):
        SegmentationTask(cfg, 6, ["a", "b"], [1.0, 1.0])
