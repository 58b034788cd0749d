"""``trainer.channels_last``: the network and every batch in channels-last memory format during a fit (opt-in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import trainer.fit as fit_mod
from trainer.config import load_config
from trainer.module import SegmentationTask

SMOKE = Path(__file__).with_name("smoke.yaml")


def _spatial_conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """Weights of the 2-D convolutions with kernels larger than 1 x 1 (a 1 x 1 kernel is contiguous in both formats)."""
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-2:] != (1, 1)]


def _is_cl(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


class _Probe(Callback):
    """Records, at every training batch, whether the conv weights and the network's input are channels-last."""

    def __init__(self) -> None:
        self.weights: list[bool] = []
        self.inputs: list[bool] = []

    def on_train_start(self, trainer, pl_module) -> None:
        pl_module.model.register_forward_pre_hook(lambda _m, args: self.inputs.append(_is_cl(args[0])) if pl_module.training else None)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        ws = _spatial_conv_weights(pl_module.model)
        self.weights.append(bool(ws) and all(_is_cl(w) for w in ws))


def test_fit_with_channels_last_trains_in_channels_last_and_writes_a_bundle(tmp_path, monkeypatch):
    cfg = load_config(SMOKE, [f"output.dir={tmp_path}", "trainer.channels_last=true", "trainer.max_epochs=1"])
    probe = _Probe()
    make = fit_mod._lightning_trainer
    monkeypatch.setattr(fit_mod, "_lightning_trainer", lambda c, d, extra=None: make(c, d, [*(extra or []), probe]))
    bundle_dir = fit_mod.fit(cfg)
    assert probe.weights and all(probe.weights), "conv weights were not channels_last during training"
    assert probe.inputs and all(probe.inputs), "training batches did not reach the network in channels_last"
    card = json.loads((bundle_dir / "card.json").read_text())
    assert card["training"]["config"]["trainer"]["channels_last"] is True
    assert card["training"]["epochs_run"] == 1 and (bundle_dir / "model.safetensors").exists()


def test_channels_last_is_off_by_default():
    cfg = load_config(SMOKE)
    assert cfg.trainer.channels_last is False
    task = SegmentationTask.from_config(cfg, len(cfg.data.bands), [f"c{i}" for i in range(3)], [1.0, 1.0, 1.0])
    ws = _spatial_conv_weights(task.model)
    assert ws and not any(_is_cl(w) for w in ws)
    shipped = load_config(Path(__file__).parents[2] / "trainer" / "configs" / "default.yaml")
    assert shipped.trainer.channels_last is False


@pytest.mark.parametrize("value", ["maybe", "1", "[true]"])
def test_bad_channels_last_value_is_one_line(value):
    with pytest.raises(ValueError) as exc:
        load_config(SMOKE, [f"trainer.channels_last={value}"])
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("config value trainer.channels_last must be true or false, got ")
