"""Training configuration: YAML files mapped onto dataclasses, unknown keys rejected.

See ``trainer/configs/default.yaml`` for the configuration the shipped model was trained with.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.config import REPO_ROOT

__all__ = ["SceneConfig", "DataConfig", "ModelConfig", "LossConfig", "OptimConfig", "TrainerConfig", "OutputConfig", "FitConfig", "load_config"]


@dataclass
class SceneConfig:
    """One training scene.

    Attributes:
        id: Sample scene id (folder name in ``<data dir>/samples``).
        split: ``None`` to split the scene into spatial blocks, or ``"train"``/``"val"``/``"test"``
            to put the whole scene in one split (small scenes of one block).
    """

    id: str
    split: str | None = None


@dataclass
class DataConfig:
    """Where chips come from and how they are cut.

    Attributes:
        data_dir: Data directory (``None``: ``$LULC_DATA_DIR`` or ``../shared/data``).
        bands: Input bands by name, in network order.
        labels: Label product used as target (``"dw"``).
        scenes: Training scenes.
        block_size: Side of the square spatial blocks that are assigned whole to one split (pixels).
        val_fraction: Share of a scene's blocks held out for validation.
        test_fraction: Share held out for the final test (never seen in training).
        chip_size: Chip side in pixels (multiple of 32).
        train_stride: Stride between training chips inside a block (pixels); val/test chips do
            not overlap.
        batch_size: Chips per batch.
        num_workers: DataLoader workers.
        max_nodata_fraction: Chips with more unlabelled pixels than this are dropped.
        chips_dir: Folder of chips exported by ``python -m trainer export-chips`` (its
            ``manifest.csv``); used in addition to ``scenes``.
        chips_cell_deg: Exported chips are split by cells of this many degrees (all chips of a
            cell go to one split, keeping neighbouring chips out of different splits).
        soft_targets: Also load each scene's ``labels_dw_probs.tif`` (Dynamic World's per-class
            probabilities x 255) as soft targets for distillation (``loss.soft_weight``).
        optional_bands: Bands of ``bands`` the model must run without: training drops them at
            random (``optim.band_dropout``) and the card lists them.
        exclude_regions: Scene-id prefixes left out of training (leave-one-region-out runs, e.g.
            ``["hungary-"]``).
    """

    bands: list[str]
    scenes: list[SceneConfig] = field(default_factory=list)
    labels: str = "dw"
    data_dir: str | None = None
    block_size: int = 256
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    chip_size: int = 128
    train_stride: int = 64
    batch_size: int = 16
    num_workers: int = 0
    max_nodata_fraction: float = 0.5
    chips_dir: str | None = None
    chips_cell_deg: float = 0.1
    soft_targets: bool = False
    optional_bands: list[str] = field(default_factory=list)
    exclude_regions: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    """Network: architecture, encoder, optional local encoder weights (``.safetensors``).

    ``init_from``: a local ``model.safetensors`` of the same architecture, bands and classes (e.g. an
    earlier bundle) whose weights initialise the whole network before training (fine-tuning).
    """

    arch: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    init_from: str | None = None


@dataclass
class LossConfig:
    """Loss = weighted cross-entropy + ``dice_weight`` x Dice.

    Attributes:
        class_weighting: ``"inverse_sqrt"`` (w_k ~ 1/sqrt(freq_k), normalised to mean 1, capped at
            ``max_class_weight``) or ``"none"``.
        dice_weight: Weight of the multiclass Dice loss (0 disables it).
        max_class_weight: Cap on any class weight.
        soft_weight: Weight of the distillation term: cross-entropy against the soft targets
            (``data.soft_targets``), on pixels that have them (Hinton et al. 2015, temperature 1).
    """

    class_weighting: str = "inverse_sqrt"
    dice_weight: float = 1.0
    max_class_weight: float = 10.0
    soft_weight: float = 0.0


@dataclass
class OptimConfig:
    """AdamW with a cosine learning-rate schedule.

    ``noise_std`` is the augmentation noise in standard deviations of the normalised bands.
    ``band_dropout`` is the probability that a training chip loses a random non-empty subset of
    ``data.optional_bands``; a dropped band is set to 0 after normalisation, i.e. its mean, which
    is how prediction fills a missing optional band.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    noise_std: float = 0.03
    band_dropout: float = 0.0


@dataclass
class TrainerConfig:
    """Lightning Trainer settings.

    Scale out with ``devices``, ``num_nodes`` and ``strategy`` (``"ddp"`` uses gloo on CPU, NCCL
    on GPUs): more machines need only these values changed.
    """

    max_epochs: int = 60
    patience: int = 15
    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    log_every_n_steps: int = 5
    limit_train_batches: float | int | None = None
    progress_bar: bool = True


@dataclass
class OutputConfig:
    """Where a run writes.

    ``dir`` holds checkpoints and logs, ``bundle_dir`` the final bundle (default
    ``<dir>/bundle``). Relative paths are relative to the repository root.
    """

    dir: str = "runs/default"
    bundle_dir: str | None = None


@dataclass
class FitConfig:
    """A complete training configuration."""

    name: str
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = 42

    @property
    def out_dir(self) -> Path:
        """Absolute run folder."""
        p = Path(self.output.dir)
        return p if p.is_absolute() else REPO_ROOT / p

    @property
    def bundle_dir(self) -> Path:
        """Absolute folder of the bundle written after training."""
        if not self.output.bundle_dir:
            return self.out_dir / "bundle"
        p = Path(self.output.bundle_dir)
        return p if p.is_absolute() else REPO_ROOT / p

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for the model card and logs)."""
        return dataclasses.asdict(self)


def _type_ok(value: Any, hint: Any) -> bool:
    """True when ``value`` fits the type hint (``int`` excludes bool, ``float`` accepts int)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "empty (null)"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(hint, getattr(hint, "__name__", str(hint)))


def _check_types(obj: Any, where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if not _type_ok(v, hints[f.name]):
            raise ValueError(f"config value {where}.{f.name} must be {_type_name(hints[f.name])}, got {v!r}".replace("<root>.", ""))


def _check_ranges(cfg: FitConfig) -> None:
    """Values that have the right type but cannot work, named by their config key."""
    d, t, o, lo = cfg.data, cfg.trainer, cfg.optim, cfg.loss
    rules = [
        (bool(cfg.name.strip()), "name", "must not be empty"),
        (len(d.bands) > 0, "data.bands", "must list at least one band"),
        (len(set(d.bands)) == len(d.bands), "data.bands", f"lists a band twice: {d.bands}"),
        (d.block_size >= 32, "data.block_size", f"must be at least 32 pixels, got {d.block_size}"),
        (d.chip_size >= 32, "data.chip_size", f"must be at least 32 pixels, got {d.chip_size}"),
        (d.train_stride >= 1, "data.train_stride", f"must be at least 1 pixel, got {d.train_stride}"),
        (d.batch_size >= 1, "data.batch_size", f"must be at least 1, got {d.batch_size}"),
        (d.num_workers >= 0, "data.num_workers", f"must be 0 or more, got {d.num_workers}"),
        (0 <= d.val_fraction < 1, "data.val_fraction", f"must be in [0, 1), got {d.val_fraction}"),
        (0 <= d.test_fraction < 1, "data.test_fraction", f"must be in [0, 1), got {d.test_fraction}"),
        (d.val_fraction + d.test_fraction < 1, "data.val_fraction + data.test_fraction", "must leave blocks for training (sum below 1)"),
        (0 <= d.max_nodata_fraction <= 1, "data.max_nodata_fraction", f"must be in [0, 1], got {d.max_nodata_fraction}"),
        (d.chips_cell_deg > 0, "data.chips_cell_deg", f"must be positive, got {d.chips_cell_deg}"),
        (d.scenes or d.chips_dir, "data.scenes", "is empty and no data.chips_dir is given: there is nothing to train on"),
        (lo.dice_weight >= 0, "loss.dice_weight", f"must be 0 or more, got {lo.dice_weight}"),
        (lo.max_class_weight > 0, "loss.max_class_weight", f"must be positive, got {lo.max_class_weight}"),
        (o.lr > 0, "optim.lr", f"must be positive, got {o.lr}"),
        (o.weight_decay >= 0, "optim.weight_decay", f"must be 0 or more, got {o.weight_decay}"),
        (o.noise_std >= 0, "optim.noise_std", f"must be 0 or more, got {o.noise_std}"),
        (t.max_epochs >= 1, "trainer.max_epochs", f"must be at least 1, got {t.max_epochs}"),
        (t.patience >= 0, "trainer.patience", f"must be 0 or more, got {t.patience}"),
        (not isinstance(t.devices, int) or t.devices >= 1, "trainer.devices", f"must be at least 1 (or 'auto'), got {t.devices}"),
        (t.num_nodes >= 1, "trainer.num_nodes", f"must be at least 1, got {t.num_nodes}"),
        (t.log_every_n_steps >= 1, "trainer.log_every_n_steps", f"must be at least 1, got {t.log_every_n_steps}"),
        (t.limit_train_batches is None or t.limit_train_batches > 0, "trainer.limit_train_batches",
         f"must be positive (a fraction <= 1 or a batch count), got {t.limit_train_batches}"),
        (bool(cfg.output.dir), "output.dir", "must not be empty"),
    ]
    for ok, key, msg in rules:
        if not ok:
            raise ValueError(f"config value {key} {msg}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"config section {where} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in config section {where}; allowed: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    nested = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "optim": OptimConfig,
              "trainer": TrainerConfig, "output": OutputConfig}
    for k, v in values.items():
        if cls is FitConfig and k in nested:
            kwargs[k] = _build(nested[k], v or {}, f"{where}.{k}")
        elif cls is DataConfig and k == "scenes":
            if not isinstance(v, list):
                raise ValueError(f"config value {where.replace('<root>.', '')}.scenes must be a list of scenes (- id: ...), got {v!r}")
            kwargs[k] = [_build(SceneConfig, s if isinstance(s, dict) else {"id": s}, f"{where}.scenes") for s in v]
        else:
            kwargs[k] = v
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"config section {where}: {exc}") from None
    _check_types(obj, where)
    return obj


def load_config(path: str | Path, overrides: list[str] | None = None) -> FitConfig:
    """Read a YAML training configuration.

    Args:
        path: YAML file.
        overrides: ``section.key=value`` strings applied on top (value parsed as YAML), e.g.
            ``["trainer.max_epochs=2", "output.dir=/tmp/run"]``.

    Returns:
        The configuration.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Unknown keys, missing required keys or bad values.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config {path} not found")
    if not path.is_file():
        raise ValueError(f"config {path} is a folder; give the YAML file, e.g. trainer/configs/default.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ValueError(f"config {path} is not a text (UTF-8) file; give a YAML file such as trainer/configs/default.yaml") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"config {path} is not valid YAML{where}: {problem}; fix the file (compare with trainer/configs/default.yaml)") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config {path} must be a mapping of sections (name, data, model, ...), got {type(raw).__name__}")
    for ov in overrides or []:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} must look like section.key=value")
        key, value = ov.split("=", 1)
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {ov!r}: {p} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"override {ov!r}: the value is not valid YAML") from None
    cfg = _build(FitConfig, raw, "<root>")
    _check_ranges(cfg)
    if cfg.data.chip_size % 32:
        raise ValueError(f"data.chip_size must be a multiple of 32, got {cfg.data.chip_size}")
    if cfg.data.chip_size > cfg.data.block_size:
        raise ValueError("data.chip_size must not exceed data.block_size")
    for s in cfg.data.scenes:
        if s.split not in (None, "train", "val", "test"):
            raise ValueError(f"scene {s.id}: split must be train, val, test or empty, got {s.split!r}")
    return cfg
