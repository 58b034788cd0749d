"""Training configuration: YAML files validated by pydantic models, unknown keys rejected.

See ``trainer/configs/default.yaml`` for the configuration the shipped model was trained with.
Every error a user can fix is a one-line :class:`ValueError` naming the config key (its full
dotted path, e.g. ``data.chip_size``); ``python -m trainer`` prints it as ``error: ...`` and exits 2.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.config import REPO_ROOT

__all__ = ["SceneConfig", "FilePairConfig", "DataConfig", "ModelConfig", "LossConfig", "OptimConfig", "TrainerConfig", "OutputConfig", "FitConfig", "load_config"]


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors and values are not coerced.

    ``strict`` keeps YAML's types as written: ``"3"`` is not a whole number, ``true`` is not a
    number; a whole number is accepted where a number is expected.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class SceneConfig(_Section):
    """One training scene.

    Attributes:
        id: Sample scene id (folder name in ``<data dir>/samples``).
        split: ``None`` to split the scene into spatial blocks, or ``"train"``/``"val"``/``"test"``
            to put the whole scene in one split (small scenes of one block).
    """

    id: str
    split: str | None = None


class FilePairConfig(_Section):
    """One training pair from files (your own imagery and labels).

    Attributes:
        image: Image GeoTIFF (bands named in its descriptions or in the sensor's file order). Relative paths
            are relative to the repository root.
        labels: Label GeoTIFF (first band: class ids of ``scheme``); on another grid it is reprojected onto
            the image grid with nearest neighbour.
        scheme: A class file (``lc.json`` layout ``.json``, ``id,name,color`` ``.csv``, QGIS ``.qml``) or a
            built-in scheme name (``dynamic_world``).
        split: As :attr:`SceneConfig.split`.
        level: Processing level of the image (``L1C``/``L2A``) when its metadata does not say.
    """

    image: str
    labels: str
    scheme: str
    split: str | None = None
    level: str | None = None


class DataConfig(_Section):
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
        files: Training pairs from files (:class:`FilePairConfig`): image, labels, class scheme.
        sampling: ``"uniform"`` (training chips on a regular grid, ``train_stride`` apart) or ``"balanced"``
            (class-balanced: ``chips_per_class`` chips centred on random pixels of each class of the training
            blocks, so a rare class is seen as often as a common one).
        chips_per_class: Chips per class for ``sampling: balanced``.
    """

    bands: list[str]
    scenes: list[SceneConfig] = Field(default_factory=list)
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
    optional_bands: list[str] = Field(default_factory=list)
    exclude_regions: list[str] = Field(default_factory=list)
    files: list[FilePairConfig] = Field(default_factory=list)
    sampling: str = "uniform"
    chips_per_class: int = 32

    @field_validator("scenes", mode="before")
    @classmethod
    def _scene_ids(cls, v: Any) -> Any:
        """A scene may be written as its bare id (``- brandenburg-2017-02-16``)."""
        return [s if isinstance(s, dict) else {"id": s} for s in v] if isinstance(v, list) else v


class ModelConfig(_Section):
    """Network: architecture, encoder, optional pretrained weights, fine-tuning.

    Attributes:
        arch: Architecture (``unet``, ``dynamicworld``).
        encoder: smp encoder name (``resnet18``, ``resnet34``, ``resnet50``, ...).
        encoder_weights: ``None`` (random), a local ``.safetensors`` file of the encoder's state dict (pretrained
            weights brought to this machine; relative paths are relative to the repository root) or an smp weights
            name (``imagenet``: downloads, fails offline).
        init_from: A bundle folder (its ``model.safetensors``) or a ``model.safetensors`` of the same architecture
            and bands (e.g. an earlier bundle) whose weights initialise the network before training (fine-tuning);
            when the classes differ, everything but the segmentation head is taken and the head starts afresh.
            Relative paths are relative to the repository root.
        freeze_encoder: Keep the encoder as loaded (from ``init_from`` or ``encoder_weights``): its parameters get
            no gradient and it stays in eval mode, so its BatchNorm statistics stay too; only the decoder and the
            head are trained (fine-tuning on few labels).
    """

    arch: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    init_from: str | None = None
    freeze_encoder: bool = False


class LossConfig(_Section):
    """Loss = weighted cross-entropy (``name: ce_dice``) or focal loss (``name: focal``) + ``dice_weight`` x Dice.

    Attributes:
        name: ``"ce_dice"`` (class-weighted cross-entropy + Dice) or ``"focal"`` (Lin et al. 2017, "Focal loss for
            dense object detection": -w_y (1 - p_y)^gamma log p_y, with the class weights as alpha; + Dice).
        gamma: Focal loss focusing parameter (0 gives weighted cross-entropy).
        class_weighting: ``"inverse_sqrt"`` (w_k ~ 1/sqrt(freq_k), normalised to mean 1, capped at
            ``max_class_weight``) or ``"none"``.
        dice_weight: Weight of the multiclass Dice loss (0 disables it).
        max_class_weight: Cap on any class weight.
        soft_weight: Weight of the distillation term: cross-entropy against the soft targets
            (``data.soft_targets``), on pixels that have them (Hinton et al. 2015, temperature 1).
    """

    name: str = "ce_dice"
    gamma: float = 2.0
    class_weighting: str = "inverse_sqrt"
    dice_weight: float = 1.0
    max_class_weight: float = 10.0
    soft_weight: float = 0.0


class OptimConfig(_Section):
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


class TrainerConfig(_Section):
    """Lightning Trainer settings.

    Scale out with ``devices``, ``num_nodes`` and ``strategy`` (``"ddp"`` uses gloo on CPU, NCCL
    on GPUs): more machines need only these values changed.

    ``precision`` is Lightning's (``"32-true"``; ``"bf16-mixed"``: bf16 autocast, faster on CPUs with native
    bf16). ``channels_last``: the network's weights and every batch in channels-last (NHWC) memory format
    during training, validation and test (off by default; the saved bundle is the same either way, its
    weights are stored contiguous).
    """

    max_epochs: int = 60
    patience: int = 15
    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    channels_last: bool = False
    log_every_n_steps: int = 5
    limit_train_batches: float | int | None = None
    progress_bar: bool = True


class OutputConfig(_Section):
    """Where a run writes.

    ``dir`` holds checkpoints and logs, ``bundle_dir`` the final bundle (default
    ``<dir>/bundle``). Relative paths are relative to the repository root.
    """

    dir: str = "runs/default"
    bundle_dir: str | None = None


class FitConfig(_Section):
    """A complete training configuration."""

    name: str
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, v: Any) -> Any:
        """An empty section (``model:`` with nothing under it) means its defaults."""
        if isinstance(v, dict):
            return {k: {} if s is None and k in _SECTIONS else s for k, s in v.items()}
        return v

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
        return self.model_dump()


_SECTIONS = ("data", "model", "loss", "optim", "trainer", "output")


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "empty (null)"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if hint is SceneConfig:
        return "scenes (- id: ...)"
    if hint is FilePairConfig:
        return "file pairs (- image: ..., labels: ..., scheme: ...)"
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return "a mapping"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(hint, getattr(hint, "__name__", str(hint)))


def _walk(loc: tuple[int | str, ...]) -> tuple[str, Any, type[BaseModel] | None, int]:
    """Follow a pydantic error location through the config models.

    Returns:
        The dotted key (list indices left out, e.g. ``data.scenes.id``), the type hint of that key,
        the section model it is or is in (``None`` for a plain value) and how many items of ``loc``
        were used.
    """
    model: type[BaseModel] | None = FitConfig
    names: list[str] = []
    hint: Any = FitConfig
    i = 0
    while i < len(loc) and model is not None and isinstance(loc[i], str) and loc[i] in model.model_fields:
        hint = model.model_fields[loc[i]].annotation
        names.append(str(loc[i]))
        i += 1
        model = hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None
        if model is None and typing.get_origin(hint) is list and i < len(loc) and isinstance(loc[i], int):
            (item,) = typing.get_args(hint)
            if isinstance(item, type) and issubclass(item, BaseModel):
                model, i = item, i + 1
    return ".".join(names), hint, model, i


def _raw_value(raw: Any, loc: tuple[int | str, ...], default: Any) -> Any:
    for k in loc:
        try:
            raw = raw[k]
        except (KeyError, IndexError, TypeError):
            return default
    return raw


def _explain(exc: ValidationError, raw: dict[str, Any]) -> str:
    """One line for the first problem pydantic found, in the words of the config file."""
    errors = exc.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        section, _, model, _ = _walk(unknown[0]["loc"][:-1])
        keys = sorted({".".join(filter(None, (section, str(e["loc"][-1])))) for e in unknown if _walk(e["loc"][:-1])[0] == section})
        where = f"config section {section}" if section else "the config's top level"
        allowed = ", ".join(model.model_fields) if model is not None else ""
        return f"unknown key(s) {', '.join(keys)} in {where}; allowed: {allowed}"
    e = errors[0]
    key, hint, model, used = _walk(e["loc"])
    if e["type"] == "missing":
        return f"config key {key} is missing (it has no default)"
    if model is not None and used == len(e["loc"]) and e["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return f"config section {key} must be a mapping, got {type(e['input']).__name__}"
    value = _raw_value(raw, e["loc"][:used], e["input"])
    return f"config value {key} must be {_type_name(hint)}, got {value!r}"


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
        (d.scenes or d.chips_dir or d.files, "data.scenes", "is empty and neither data.chips_dir nor data.files is given: there is nothing to train on"),
        (d.sampling in ("uniform", "balanced"), "data.sampling", f"must be uniform or balanced, got {d.sampling!r}"),
        (d.chips_per_class >= 1, "data.chips_per_class", f"must be at least 1, got {d.chips_per_class}"),
        (lo.name in ("ce_dice", "focal"), "loss.name", f"must be ce_dice or focal, got {lo.name!r}"),
        (lo.gamma >= 0, "loss.gamma", f"must be 0 or more, got {lo.gamma}"),
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
        (not cfg.model.freeze_encoder or bool(cfg.model.init_from or cfg.model.encoder_weights), "model.freeze_encoder",
         "needs model.init_from or model.encoder_weights: a frozen random encoder learns nothing"),
        (not cfg.model.freeze_encoder or cfg.model.arch != "dynamicworld", "model.freeze_encoder",
         "works with smp architectures (unet), not dynamicworld, which has no separate encoder"),
    ]
    for ok, key, msg in rules:
        if not ok:
            raise ValueError(f"config value {key} {msg}")


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``section.key=value`` in the raw YAML mapping (value parsed as a YAML scalar or list)."""
    if "=" not in override:
        raise ValueError(f"override {override!r} must look like section.key=value")
    key, value = override.split("=", 1)
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise ValueError(f"override {override!r}: {p} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ValueError(f"override {override!r}: the value is not valid YAML") from None


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
        ValueError: Unknown keys, missing required keys or bad values (one line naming the key by
            its dotted path), malformed YAML (with line and column), a malformed override.
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
        _apply_override(raw, ov)
    try:
        cfg = FitConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(_explain(exc, raw)) from None
    _check_ranges(cfg)
    if cfg.data.chip_size % 32:
        raise ValueError(f"data.chip_size must be a multiple of 32, got {cfg.data.chip_size}")
    if cfg.data.chip_size > cfg.data.block_size:
        raise ValueError("data.chip_size must not exceed data.block_size")
    for s in cfg.data.scenes:
        if s.split not in (None, "train", "val", "test"):
            raise ValueError(f"scene {s.id}: split must be train, val, test or empty, got {s.split!r}")
    for f in cfg.data.files:
        if f.split not in (None, "train", "val", "test"):
            raise ValueError(f"data.files {f.image}: split must be train, val, test or empty, got {f.split!r}")
        if f.level not in (None, "L1C", "L2A"):
            raise ValueError(f"data.files {f.image}: level must be L1C, L2A or empty, got {f.level!r}")
    return cfg
