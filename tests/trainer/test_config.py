"""trainer.config: pydantic models behind the YAML configs, errors that name the key by its dotted path."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import REPO_ROOT
from trainer.cli import main
from trainer.config import FitConfig, load_config

SMOKE = Path(__file__).with_name("smoke.yaml")


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "trainer" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_unchanged(path):
    cfg = load_config(path)
    d = cfg.to_dict()
    assert isinstance(cfg, FitConfig) and isinstance(d["data"], dict) and isinstance((d["data"]["scenes"] or d["data"]["files"])[0], dict)
    assert list(d) == ["name", "data", "model", "loss", "optim", "trainer", "output", "seed"]
    assert d["data"]["bands"] == cfg.data.bands and d["model"]["arch"] == cfg.model.arch


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("data.chip_sise=64", "unknown key(s) data.chip_sise in config section data; allowed: bands, scenes"),
        ("data.scenes=[{id: a, foo: 1}]", "unknown key(s) data.scenes.foo in config section data.scenes; allowed: id, split"),
        ("foo.bar=1", "unknown key(s) foo in the config's top level; allowed: name, data, model"),
        ("trainer.devices=true", "config value trainer.devices must be a whole number or text, got True"),
        ("data.bands=[B2, 3]", "config value data.bands must be a list of text, got ['B2', 3]"),
        ("data.scenes=x", "config value data.scenes must be a list of scenes (- id: ...), got 'x'"),
        ("data.scenes=[3]", "config value data.scenes.id must be text, got 3"),
        ("data.scenes=[{split: val}]", "config key data.scenes.id is missing"),
        ("optim.lr=1e-3", "config value optim.lr must be a number, got '1e-3'"),  # YAML 1.1 reads 1e-3 as text
        ("data.chip_size='64'", "config value data.chip_size must be a whole number, got '64'"),
        ("output.bundle_dir=3", "config value output.bundle_dir must be text or empty (null), got 3"),
        ("model=x", "config section model must be a mapping, got str"),
    ],
)
def test_errors_name_the_dotted_key(override, words):
    with pytest.raises(ValueError) as info:
        load_config(SMOKE, [override])
    assert type(info.value) is ValueError and words in str(info.value) and "\n" not in str(info.value)


def test_missing_section_and_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    with pytest.raises(ValueError, match="config key data is missing"):
        load_config(bad)
    bad.write_text("name: x\ndata:\n  bands: [B2, B3\n")
    with pytest.raises(ValueError, match=r"not valid YAML at line 4, column 1"):
        load_config(bad)


def test_values_keep_their_yaml_types():
    assert isinstance(load_config(SMOKE).trainer.limit_train_batches, int)  # Lightning: 3 batches, not 3.0
    assert load_config(SMOKE, ["trainer.limit_train_batches=0.5"]).trainer.limit_train_batches == 0.5
    assert load_config(SMOKE, ["trainer.devices=auto"]).trainer.devices == "auto"
    cfg = load_config(SMOKE, ["data.scenes=[brandenburg-2017-02-16, {id: x, split: val}]"])
    assert [(s.id, s.split) for s in cfg.data.scenes] == [("brandenburg-2017-02-16", None), ("x", "val")]


def test_override_into_an_empty_section(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(SMOKE.read_text().replace("model:\n  arch: unet\n  encoder: resnet18\n", "model:\n"))
    assert load_config(cfg_file).model.arch == "unet"
    assert load_config(cfg_file, ["model.arch=fpn"]).model.arch == "fpn"


@pytest.mark.parametrize(("override", "key"), [("data.chip_sise=64", "data.chip_sise"), ("trainer.max_epochs=x", "trainer.max_epochs")])
def test_cli_prints_one_error_line_and_exits_2(override, key, capsys):
    rc = main(["fit", "--config", str(SMOKE), "--set", override])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], err
