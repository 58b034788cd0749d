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
