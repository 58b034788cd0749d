"""The Train page's configuration (issue 18): its choices become overrides, the YAML it shows is the validated config."""

from __future__ import annotations

import pytest
import yaml

from app import training


def test_page_overrides_and_yaml():
    ov = training.page_overrides("focal", "balanced", "models/default")
    assert ov == ["loss.name=focal", "data.sampling=balanced", "model.init_from=models/default"]
    d = yaml.safe_load(training.config_yaml("trainer/configs/wales.yaml", 3, ov))
    assert d["loss"]["name"] == "focal" and d["data"]["sampling"] == "balanced" and d["trainer"]["max_epochs"] == 3
    assert d["data"]["files"][0]["scheme"].endswith("labels_rsgislib.json")


def test_bad_choice_is_one_sentence():
    with pytest.raises(ValueError, match="loss.name must be ce_dice or focal"):
        training.config_yaml("trainer/configs/default.yaml", 1, ["loss.name=hinge"])


def test_data_choices_replace_the_configs_data():
    files = [{"image": "runs/x/inputs/image.tif", "labels": "runs/x/inputs/labels.tif", "scheme": "runs/x/inputs/lc.json"}]
    d = yaml.safe_load(training.config_yaml("trainer/configs/default.yaml", 1, training.page_overrides(files=files)))
    assert d["data"]["files"][0]["scheme"] == "runs/x/inputs/lc.json" and d["data"]["scenes"] == []
    scenes = training.scene_entries("trainer/configs/default.yaml", ["dfc2020-roi0000-test-p0", "sandiego-2020-06-14"])
    assert scenes == [{"id": "dfc2020-roi0000-test-p0", "split": "train"}, {"id": "sandiego-2020-06-14"}]
    d = yaml.safe_load(training.config_yaml("trainer/configs/wales.yaml", 1, training.page_overrides(scenes=scenes, encoder="resnet50")))
    assert [s["id"] for s in d["data"]["scenes"]] == ["dfc2020-roi0000-test-p0", "sandiego-2020-06-14"] and d["data"]["files"] == []
    assert d["model"]["encoder"] == "resnet50"


def test_bundle_names_and_init_from_checks():
    assert training.card_name("app-20261202-071005", "trainer/configs/fusion.yaml", 3) == "app-20261202-0710 (fusion, 3 epochs)"
    assert training.card_name("app-20261202-071005", "trainer/configs/wales.yaml", 1) == "app-20261202-0710 (wales, 1 epoch)"
    assert training.init_from_problem("models/default", "unet", "resnet18", 9) is None
    assert "resnet34" in training.init_from_problem("models/default", "unet", "resnet34", 9)
    assert "takes 9 bands, this training 8" in training.init_from_problem("models/default", "unet", "resnet18", 8)
    assert training.config_defaults("trainer/configs/fusion.yaml")["sensor"] == "S2+S1"
