"""The headless trainer through its real command line: fit, evaluate, predict, resume, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.windows import Window

from core.config import REPO_ROOT
from core.io.raster import write_cog
from core.sources.samples import load_image
from trainer.config import load_config

SMOKE = Path(__file__).with_name("smoke.yaml")


def cli(*args: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "trainer", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"trainer {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    cli("fit", "--config", str(SMOKE), "--set", f"output.dir={out}")
    return out


def test_fit_writes_bundle_with_card(smoke_run):
    card = json.loads((smoke_run / "bundle" / "card.json").read_text())
    assert card["bands"] == ["B2", "B3", "B4", "B8"] and card["encoder"] == "resnet18"
    assert len(card["mean"]) == 4 and all(s > 0 for s in card["std"])
    assert card["classes"]["name"] == "dynamic_world" and len(card["classes"]["classes"]) == 9
    blocks = card["training"]["blocks"]
    assert {b["split"] for b in blocks} == {"train", "val", "test"}
    held = {(r["scene"], r["labels"]): r for r in card["metrics"]["held_out"]}
    assert ("brandenburg-2017-02-16", "dw") in held and ("brandenburg-2017-02-16", "osm") in held
    assert "baseline" in held[("sen1floods11-spain-7370579", "water")]
    assert (smoke_run / "checkpoints" / "last.ckpt").exists()
    metrics = pd.read_csv(next((smoke_run / "logs").glob("version_*/metrics.csv")))
    assert "val_miou" in metrics and metrics["val_miou"].notna().any() and metrics["train_loss_step"].notna().any()


def test_evaluate_reproduces_card_numbers(smoke_run):
    bundle = smoke_run / "bundle"
    card = json.loads((bundle / "card.json").read_text())
    held = {(r["scene"], r["labels"]): r for r in card["metrics"]["held_out"]}
    p = cli("evaluate", "--checkpoint", str(bundle), "--scene", "brandenburg-2017-02-16", "--labels", "dw", "--json")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    expected = held[("brandenburg-2017-02-16", "dw")]["metrics"]
    assert res["metrics"]["confusion_matrix"] == expected["confusion_matrix"]
    assert res["metrics"]["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    table = cli("evaluate", "--checkpoint", str(bundle), "--scene", "sen1floods11-spain-7370579", "--labels", "water").stdout
    assert "mIoU" in table and "not_water" in table and "dw labels vs water" in table


def test_evaluate_user_errors_are_messages(smoke_run):
    p = cli("evaluate", "--checkpoint", str(smoke_run / "bundle"), "--scene", "atlantis", check=False)
    assert p.returncode == 2 and "available" in p.stderr and "Traceback" not in p.stderr
    p = cli("evaluate", "--checkpoint", str(smoke_run), "--scene", "brandenburg-2017-02-16", check=False)
    assert p.returncode == 2 and "card.json" in p.stderr


def test_predict_writes_georeferenced_cog(smoke_run, tmp_path):
    img = load_image("brandenburg-2017-02-16", ["B8", "B4", "B3", "B2", "B11"], Window(200, 100, 300, 200))
    src = write_cog(img, tmp_path / "aoi.tif")
    out, conf = tmp_path / "pred.tif", tmp_path / "conf.tif"
    cli("predict", "--checkpoint", str(smoke_run / "bundle"), "--input", str(src), "--output", str(out), "--confidence", str(conf), "--tile", "128")
    with rasterio.open(out) as ds, rasterio.open(src) as s:
        assert ds.crs == s.crs and ds.transform == s.transform and ds.shape == s.shape
        assert ds.colormap(1)[0][:3] == (0x41, 0x9B, 0xDF)
        assert ds.read(1).max() < 9
    with rasterio.open(conf) as ds:
        c = ds.read(1)
        assert 1 / 9 <= c.min() and c.max() <= 1.0001


def test_predict_rejects_input_without_model_bands(smoke_run, tmp_path):
    img = load_image("brandenburg-2017-02-16", ["B4", "B3"], Window(0, 0, 64, 64))
    src = write_cog(img, tmp_path / "two.tif")
    p = cli("predict", "--checkpoint", str(smoke_run / "bundle"), "--input", str(src), "--output", str(tmp_path / "o.tif"), check=False)
    assert p.returncode == 2 and "B8" in p.stderr and "B2" in p.stderr


def test_config_validation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("chip_size: 64", "chip_size: 70"))
    with pytest.raises(ValueError, match="multiple of 32"):
        load_config(bad)
    with pytest.raises(ValueError, match="unknown key"):
        load_config(SMOKE, ["data.chip_sise=64"])
    cfg = load_config(SMOKE, ["trainer.max_epochs=3"])
    assert cfg.trainer.max_epochs == 3 and cfg.data.scenes[0].id == "brandenburg-2017-02-16"


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "trainer", "fit", "--config", str(SMOKE), "--set", f"output.dir={out}", "--set", "trainer.max_epochs=50",
            "--set", "trainer.patience=100"]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(1.0)  # let the save finish
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "no checkpoint was written before the kill"
    import torch

    epoch_at_kill = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    target = epoch_at_kill + 2
    p = cli("fit", "--config", str(SMOKE), "--set", f"output.dir={out}", "--set", f"trainer.max_epochs={target}", "--resume")
    assert "Restoring states from the checkpoint" in p.stdout + p.stderr
    logs = sorted((out / "logs").glob("version_*/metrics.csv"))
    resumed = pd.read_csv(logs[-1])
    assert resumed["epoch"].min() >= epoch_at_kill, "the resumed run started again from epoch 0"
    assert resumed["epoch"].max() == target - 1
    assert (out / "bundle" / "card.json").exists()


@pytest.mark.slow
def test_two_process_cpu_ddp(tmp_path):
    out = tmp_path / "ddp"
    p = cli("fit", "--config", str(SMOKE), "--set", f"output.dir={out}", "--set", "trainer.devices=2", "--set", "trainer.strategy=ddp",
            "--set", "trainer.limit_train_batches=2")
    text = p.stdout + p.stderr
    assert "distributed_backend=gloo" in text and "All distributed processes registered" in text
    assert "MEMBER: 2/2" in text
    card = json.loads((out / "bundle" / "card.json").read_text())
    assert card["metrics"]["held_out"]
    assert np.isfinite(card["training"]["best_val_miou"])
