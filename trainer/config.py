"""Training configuration: YAML files mapped onto dataclasses, unknown keys rejected.

See ``trainer/configs/default.yaml`` for the configuration the shipped model was trained with.
"""

from __future__ import annotations

import dataclasses
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


@dataclass
class ModelConfig:
    """Network: architecture, encoder, optional local encoder weights (``.safetensors``)."""

    arch: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None


@dataclass
class LossConfig:
    """Loss = weighted cross-entropy + ``dice_weight`` x Dice.

    Attributes:
        class_weighting: ``"inverse_sqrt"`` (w_k ~ 1/sqrt(freq_k), normalised to mean 1, capped at
            ``max_class_weight``) or ``"none"``.
        dice_weight: Weight of the multiclass Dice loss (0 disables it).
        max_class_weight: Cap on any class weight.
    """

    class_weighting: str = "inverse_sqrt"
    dice_weight: float = 1.0
    max_class_weight: float = 10.0


@dataclass
class OptimConfig:
    """AdamW with a cosine learning-rate schedule.

    ``noise_std`` is the augmentation noise in standard deviations of the normalised bands.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    noise_std: float = 0.03


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
            kwargs[k] = [_build(SceneConfig, s if isinstance(s, dict) else {"id": s}, f"{where}.scenes") for s in v]
        else:
            kwargs[k] = v
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"config section {where}: {exc}") from None


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
    raw = yaml.safe_load(path.read_text()) or {}
    for ov in overrides or []:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} must look like section.key=value")
        key, value = ov.split("=", 1)
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    cfg = _build(FitConfig, raw, "<root>")
    if cfg.data.chip_size % 32:
        raise ValueError(f"data.chip_size must be a multiple of 32, got {cfg.data.chip_size}")
    if cfg.data.chip_size > cfg.data.block_size:
        raise ValueError("data.chip_size must not exceed data.block_size")
    for s in cfg.data.scenes:
        if s.split not in (None, "train", "val", "test"):
            raise ValueError(f"scene {s.id}: split must be train, val, test or empty, got {s.split!r}")
    return cfg
