"""The shipped default bundle loads, fits the sample pack, and reproduces its card's numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.config import DEFAULT_BUNDLE_DIR
from models.bundle import load_bundle
from trainer.evaluation import evaluate_scene


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(DEFAULT_BUNDLE_DIR)


def test_default_bundle_card(bundle):
    card = bundle.card
    assert card.arch == "unet" and card.encoder == "resnet18"
    assert card.bands == ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]
    assert card.scheme_name == "dynamic_world" and card.num_classes == 9
    assert (DEFAULT_BUNDLE_DIR / "model.safetensors").stat().st_size < 50 * 2**20
    test_blocks = [b for b in card.training["blocks"] if b["split"] == "test"]
    assert {b["scene"] for b in test_blocks} == {"brandenburg-2017-02-16", "sen1floods11-spain-7370579"}


@pytest.mark.parametrize(("scene", "labels"), [("brandenburg-2017-02-16", "dw"), ("sen1floods11-spain-7370579", "water")])
def test_evaluate_reproduces_the_card(bundle, scene, labels):
    card = json.loads((DEFAULT_BUNDLE_DIR / "card.json").read_text())
    expected = next(r for r in card["metrics"]["held_out"] if r["scene"] == scene and r["labels"] == labels)
    got = evaluate_scene(bundle, scene, labels, split="test")
    assert got["windows"] == expected["windows"]
    # the card's numbers to their printed precision; a CPU with other kernels may flip a handful of near-tied pixels
    cm_diff = np.abs(np.array(got["metrics"]["confusion_matrix"]) - np.array(expected["metrics"]["confusion_matrix"])).sum()
    assert cm_diff <= 0.001 * expected["metrics"]["pixels"]
    assert got["metrics"]["miou"] == pytest.approx(expected["metrics"]["miou"], abs=1e-3)
    assert got["metrics"]["overall_accuracy"] == pytest.approx(expected["metrics"]["overall_accuracy"], abs=1e-3)
    if "baseline" in expected:
        assert got["baseline"]["metrics"]["confusion_matrix"] == expected["baseline"]["metrics"]["confusion_matrix"]


def test_default_model_beats_chance_on_held_out_dynamic_world(bundle):
    got = evaluate_scene(bundle, "brandenburg-2017-02-16", "dw", split="test")
    assert got["metrics"]["overall_accuracy"] > 0.6 and got["metrics"]["miou"] > 0.3
