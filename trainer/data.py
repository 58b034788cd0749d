"""Training data: scenes from the sample source, spatial-block splits, chips, a Lightning datamodule.

Scenes are small enough to hold in memory; chips are views into them. The same band selection
(:func:`core.sources.samples.load_image`) and splits (:mod:`core.splits`) serve evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.classes import NODATA_CLASS, ClassScheme
from core.inputs.decision import decide, prepare_raster
from core.io.guards import check_same_grid
from core.io.raster import raster_info, read_raster
from core.sources.samples import get_scene, load_labels, load_model_input, scene_decision
from core.splits import ChipFootprint, SplitBlock, block_splits, chip_splits, chip_windows
from trainer.config import FitConfig

__all__ = ["SceneData", "balanced_chips", "load_scenes", "load_file_pairs", "test_block_crops", "band_statistics", "class_weights", "ChipDataset", "LulcDataModule"]



@dataclass
class SceneData:
    """One scene in memory.

    Attributes:
        id: Scene id.
        image: float32 (C, H, W) raw band values, NaN = nodata.
        target: uint8 (H, W) class indices 0..K-1, 255 = no label (or no image data).
        blocks: Its split blocks.
        level: Sentinel-2 processing level of the image (``"L1C"``, ``"L2A"``, ``"unknown"``).
        input: How the image was read (:meth:`core.inputs.decision.InputDecision.summary`).
        soft: uint8 (K, H, W) soft targets (Dynamic World probabilities x 255, ``labels_dw_probs.tif``),
            all 0 where there are none; ``None`` when soft targets are off or the scene has none.
    """

    id: str
    image: np.ndarray
    target: np.ndarray
    blocks: list[SplitBlock]
    level: str = "unknown"
    input: str = ""
    soft: np.ndarray | None = None


@dataclass(frozen=True)
class _TrainingBands:
    """The card-like view of a training config for :func:`core.inputs.decision.decide` (all bands required)."""

    bands: list[str]
    mean: list[float]
    name: str = "training data"
    optional_bands: tuple = ()
    levels: tuple = ()
    level_agreement: tuple = ()


def _training_card(cfg: FitConfig) -> _TrainingBands:
    return _TrainingBands(list(cfg.data.bands), [0.0] * len(cfg.data.bands))


def load_scenes(cfg: FitConfig, *, offset: int | str | None = None) -> tuple[list[SceneData], ClassScheme]:
    """Load every configured scene and cut it into split blocks.

    Every image goes through :mod:`core.inputs.decision` (band aliases, scale, +1000 offset, level), as
    inputs at prediction time do.

    Args:
        cfg: The configuration.
        offset: Radiometric offset of the training images (``None``/``"auto"``: decided per image).

    Returns:
        (scenes, the target class scheme).

    Raises:
        SceneNotFoundError, BandError: From the sample source, with actionable messages.
        ValueError: Scenes whose label products use different schemes.
    """
    out: list[SceneData] = []
    scheme: ClassScheme | None = None
    root = cfg.data.data_dir
    if cfg.data.soft_targets and cfg.data.labels != "dw":
        raise ValueError(f"data.soft_targets needs data.labels: dw (Dynamic World probabilities), not {cfg.data.labels!r}")
    for sc_cfg in cfg.data.scenes:
        if any(sc_cfg.id.startswith(p) for p in cfg.data.exclude_regions):
            continue
        scene = get_scene(sc_cfg.id, root)
        decision = scene_decision(scene, _training_card(cfg), offset=offset)
        data = load_model_input(scene, decision).data
        lab, sch = load_labels(scene, cfg.data.labels)
        if scheme is not None and sch.name != scheme.name:
            raise ValueError(f"scene {scene.id} labels use {sch.name}, others {scheme.name}")
        scheme = sch
        target = sch.to_index(lab.data[0])
        target[np.isnan(data).any(axis=0)] = NODATA_CLASS
        # scenes on one grid (a place on several dates) share one block layout, so a block held out
        # on one date is held out on every date and no place leaks from test into training
        info = raster_info(scene.path / "image_s2.tif")
        grid_key = f"{info['crs']}|{tuple(info['transform'])}|{scene.height}x{scene.width}"
        blocks = [
            replace(bl, scene=scene.id) for bl in block_splits(
                grid_key, scene.height, scene.width, cfg.data.block_size,
                val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction,
                seed=cfg.seed, whole=sc_cfg.split,
            )
        ]
        soft = _load_soft(scene, target) if cfg.data.soft_targets else None
        out.append(SceneData(scene.id, data, target, blocks, decision.level, decision.summary(), soft))
    extra = [("data.files", load_file_pairs)] if cfg.data.files else []
    extra += [("exported chips", load_exported_chips)] if cfg.data.chips_dir else []
    for what, load in extra:
        more, more_scheme = load(cfg, offset=offset)
        if scheme is not None and more_scheme.name != scheme.name:
            raise ValueError(f"{what} use class scheme {more_scheme.name}, the data before them {scheme.name}; train on one scheme")
        out += more
        scheme = more_scheme
    if scheme is None:
        raise ValueError("no training data: list data.scenes or data.files, or set data.chips_dir")
    return out, scheme


def load_file_pairs(cfg: FitConfig, *, offset: int | str | None = None) -> tuple[list[SceneData], ClassScheme]:
    """The configured (image, labels, scheme) file pairs, one SceneData each (id ``file:<image stem>``), cut into split blocks.

    Labels on another grid are reprojected onto the image grid (nearest neighbour; said on stderr). Blocks follow
    :func:`core.splits.block_splits` as for pack scenes, keyed by the image grid.

    Raises:
        LulcError: A missing file, a malformed class file, labels that do not overlap or hold values outside the
            scheme, an image without a CRS, pairs of different schemes (one sentence each).
    """
    import sys

    from core.classes import register_scheme
    from core.config import REPO_ROOT
    from core.errors import SchemeError
    from core.sources.files import load_file_pair, resolve_scheme

    def path(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else REPO_ROOT / q

    out: list[SceneData] = []
    scheme: ClassScheme | None = None
    for f in cfg.data.files:
        sch = resolve_scheme(f.scheme, REPO_ROOT)
        if scheme is not None and (sch.name, sch.classes) != (scheme.name, scheme.classes):
            raise SchemeError(f"data.files {f.image} uses class scheme {sch.name!r}, an earlier pair {scheme.name!r}; train on one scheme")
        scheme = register_scheme(sch)
        img = path(f.image)
        sid = f"file:{img.parent.name}/{img.stem}"
        pair = load_file_pair(img, path(f.labels), sch, _training_card(cfg), offset=offset, level=f.level, what=f"data.files {f.image}")
        for note in pair.notes:
            print(note, file=sys.stderr)
        h, w = pair.target.shape
        grid_key = f"{pair.crs}|{tuple(pair.transform)}|{h}x{w}"
        blocks = [replace(bl, scene=sid) for bl in block_splits(grid_key, h, w, cfg.data.block_size, val_fraction=cfg.data.val_fraction,
                                                                 test_fraction=cfg.data.test_fraction, seed=cfg.seed, whole=f.split)]
        out.append(SceneData(sid, pair.image, pair.target, blocks, pair.decision.level, pair.decision.summary()))
    assert scheme is not None
    return out, scheme


def test_block_crops(scenes: list[SceneData]) -> list[SceneData]:
    """Each test block of the given scenes as a SceneData of its own (for :func:`trainer.scene_scores.evaluate_arrays`)."""
    crops = []
    for s in scenes:
        for b in s.blocks:
            if b.split == "test":
                sl = (slice(b.row_off, b.row_off + b.height), slice(b.col_off, b.col_off + b.width))
                crops.append(SceneData(s.id, s.image[:, sl[0], sl[1]], s.target[sl], [replace(b, row_off=0, col_off=0)], s.level, s.input))
    return crops


def manifest_fill(value, default: float | None) -> float | None:
    """A fill value from a manifest cell read as text: empty (an older manifest) gives ``default``, ``"nan"`` NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    text = str(value).strip()
    if not text or text in ("<NA>", "None"):
        return default
    return float(text)


def load_exported_chips(cfg: FitConfig, *, offset: int | str | None = None) -> tuple[list[SceneData], ClassScheme]:
    """Chips written by ``export-chips`` (or downloaded batch exports), one SceneData each.

    Image bands are read by name from ``<id>.tif`` (and ``<id>_s1.tif`` when a batch export wrote
    radar separately); labels from ``<id>_label.tif``. Each image goes through :mod:`core.inputs.decision`;
    its level is the manifest's ``level`` column where present (Earth Engine collection), and the
    Earth Engine ``*_HARMONIZED`` collections carry no offset.

    Fill values: a GeoTIFF without a nodata tag (a batch export of an older version) takes the
    manifest's ``image_nodata``/``s1_nodata``/``label_nodata``, else the fill the export used
    (0 for Sentinel-2, -9999 for Sentinel-1, 255 for Dynamic World, 0 for WorldCover), so fills
    become NaN / unlabelled, never training data. Every chip, downloaded or batch-exported, with
    more nodata than its manifest ``max_nodata`` (default 0.1) is left out.

    Splits: :func:`core.splits.chip_splits` groups overlapping or touching chips so that no
    validation or test pixel lies under a training chip (chips in the buffer between splits are
    left out).

    Raises:
        FileNotFoundError: No manifest in ``data.chips_dir``.
        ValueError: The manifest lists no usable chip, or chips of several schemes.
    """
    from dataclasses import replace

    from core.classes import get_scheme
    from core.errors import BandError
    from core.io.raster import read_raster, stack_bands
    from trainer.export import read_manifest

    def filled(raster, value, default):
        fill = manifest_fill(value, default)
        return replace(raster, nodata=fill) if raster.nodata is None and fill is not None else raster

    folder = Path(cfg.data.chips_dir)
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"no manifest.csv in {folder}; run python -m trainer export-chips first")
    rows = read_manifest(manifest)
    rows = rows[rows.status.isin(["ok", "submitted"])]
    schemes = set(rows.scheme)
    if len(schemes) > 1:
        raise ValueError(f"{manifest} mixes label schemes {sorted(schemes)}")
    out: list[SceneData] = []
    footprints: list[ChipFootprint] = []
    for r in rows.itertuples():
        img_path, lab_path = folder / r.image, folder / r.label
        if not img_path.exists() or not lab_path.exists():
            continue  # a batch export not downloaded yet
        first = read_raster(img_path)
        parts = [filled(first, r.image_nodata, float("nan") if np.issubdtype(first.data.dtype, np.floating) else 0.0)]
        if (folder / f"{r.id}_s1.tif").exists():
            parts.append(filled(read_raster(folder / f"{r.id}_s1.tif"), r.s1_nodata, -9999.0))
        try:
            raster = stack_bands(parts, list(dict.fromkeys(n for p in parts for n in p.band_names)))
            level = str(getattr(r, "level", "") or "")
            decision = decide(_training_card(cfg), list(raster.band_names), raster.data, nodata=raster.nodata,
                              metadata={"RADIOMETRIC_OFFSET": "none (Earth Engine harmonized collection)"} if offset is None else None,
                              offset=offset, level=level if level in ("L1C", "L2A") else None,
                              level_reason="export manifest", what=f"chip {r.id}")
            image = prepare_raster(raster, decision).data
        except BandError as exc:
            raise ValueError(f"chip {r.id}: {exc}") from None
        scheme = get_scheme(r.scheme)
        lab = read_raster(lab_path)
        target = scheme.to_index(lab.data[0])
        label_fill = lab.nodata if lab.nodata is not None else manifest_fill(r.label_nodata, 255.0 if r.scheme == "dynamic_world" else 0.0)
        target[lab.data[0] == label_fill] = NODATA_CLASS
        target[np.isnan(image).any(axis=0)] = NODATA_CLASS
        limit = r.max_nodata if r.max_nodata == r.max_nodata else 0.1  # NaN: an older manifest
        if (target == NODATA_CLASS).mean() > limit:
            continue
        h, w = target.shape
        footprints.append(ChipFootprint(r.id, str(first.crs), first.transform, w, h))
        out.append(SceneData(f"chip:{r.id}", image, target, [SplitBlock(f"chip:{r.id}", 0, 0, h, w, "")], decision.level, decision.summary()))
    splits = chip_splits(footprints, cell_deg=cfg.data.chips_cell_deg, val=cfg.data.val_fraction, test=cfg.data.test_fraction,
                         seed=cfg.seed)
    out = [replace(s, blocks=[replace(s.blocks[0], split=splits[s.id[5:]])]) for s in out if splits[s.id[5:]] is not None]
    if not out:
        raise ValueError(f"{manifest} lists no chip whose files are present in {folder} and within its nodata limit")
    return out, get_scheme(schemes.pop())


def _load_soft(scene, target: np.ndarray) -> np.ndarray | None:
    """A scene's Dynamic World probabilities (uint8 (K, H, W), x 255) on its grid, 0 where ``target`` is unlabelled.

    Returns ``None`` if the scene has no ``labels_dw_probs.tif``.

    Raises:
        GridMismatchError: The file is not on the image's grid.
    """
    path = scene.path / "labels_dw_probs.tif"
    if not path.exists():
        return None
    check_same_grid(raster_info(scene.path / "image_s2.tif"), raster_info(path),
                    what=f"scene {scene.id}", names=("image_s2.tif", path.name))
    soft = np.ascontiguousarray(read_raster(path).data.astype(np.uint8))
    soft[:, target == NODATA_CLASS] = 0
    return soft


def _block_pixels(scenes: list[SceneData], split: str):
    for s in scenes:
        for b in s.blocks:
            if b.split == split:
                sl = (slice(b.row_off, b.row_off + b.height), slice(b.col_off, b.col_off + b.width))
                yield s, sl


def band_statistics(scenes: list[SceneData]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over the valid pixels of the training blocks.

    Returns:
        (mean, std), float64 (C,) each, in raw units.
    """
    c = scenes[0].image.shape[0]
    n = np.zeros(c)
    s1 = np.zeros(c)
    s2 = np.zeros(c)
    for s, sl in _block_pixels(scenes, "train"):
        x = s.image[:, sl[0], sl[1]].reshape(c, -1).astype(np.float64)
        ok = ~np.isnan(x)
        n += ok.sum(1)
        s1 += np.where(ok, x, 0).sum(1)
        s2 += np.where(ok, x * x, 0).sum(1)
    if (n == 0).any():
        raise ValueError("the training blocks hold no valid pixels for some band")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 1e-12))
    return mean, std


def absent_classes(scenes: list[SceneData], scheme: ClassScheme) -> list[str]:
    """Names of the scheme's classes with no pixel in the training blocks."""
    counts = np.zeros(scheme.num_classes)
    for s, sl in _block_pixels(scenes, "train"):
        t = s.target[sl]
        counts += np.bincount(t[t != NODATA_CLASS].ravel(), minlength=scheme.num_classes)[: scheme.num_classes]
    return [n for n, c in zip(scheme.names, counts, strict=True) if c == 0]


def class_weights(scenes: list[SceneData], num_classes: int, mode: str, cap: float) -> np.ndarray:
    """Cross-entropy class weights from the training blocks' label frequencies.

    ``inverse_sqrt``: w_k = 1 / sqrt(f_k), normalised to mean 1 over present classes, capped at
    ``cap``; classes absent from training get weight 0 (they cannot be learnt anyway).

    Returns:
        float32 (K,).
    """
    if mode == "none":
        return np.ones(num_classes, dtype=np.float32)
    if mode != "inverse_sqrt":
        raise ValueError(f"loss.class_weighting must be inverse_sqrt or none, got {mode!r}")
    counts = np.zeros(num_classes)
    for s, sl in _block_pixels(scenes, "train"):
        t = s.target[sl]
        counts += np.bincount(t[t != NODATA_CLASS].ravel(), minlength=num_classes)[:num_classes]
    present = counts > 0
    w = np.zeros(num_classes)
    w[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
    w[present] /= w[present].mean()
    return np.minimum(w, cap).astype(np.float32)


def balanced_chips(scenes: list[SceneData], split: str, chip_size: int, per_class: int, seed: int) -> list[tuple[int, int, int]]:
    """Class-balanced chip positions: ``per_class`` chips centred on random labelled pixels of each class.

    Centres are drawn uniformly among the pixels of a class in the split's blocks (all scenes together); a chip is
    moved inside its block where the centre is near an edge, so no chip crosses into another split. A class with no
    pixel in the split gets no chip (and a warning on stderr).

    Returns:
        ``(scene index, row, col)`` of each chip's top-left corner.
    """
    import sys

    rng = np.random.default_rng(seed)
    per_k: dict[int, list[tuple[int, int, int, int]]] = {}
    for i, s in enumerate(scenes):
        for bi, b in enumerate(s.blocks):
            if b.split != split or b.height < chip_size or b.width < chip_size:
                continue
            t = s.target[b.row_off : b.row_off + b.height, b.col_off : b.col_off + b.width]
            for k in np.unique(t):
                if k != NODATA_CLASS:
                    per_k.setdefault(int(k), []).append((i, bi, int((t == k).sum()), int(k)))
    items: list[tuple[int, int, int]] = []
    for k in sorted(per_k):
        where = per_k[k]
        counts = np.array([w[2] for w in where], dtype=float)
        picks = rng.choice(len(where), size=per_class, p=counts / counts.sum())
        for j in picks:
            i, bi, _, _ = where[j]
            s, b = scenes[i], scenes[i].blocks[bi]
            t = s.target[b.row_off : b.row_off + b.height, b.col_off : b.col_off + b.width]
            rr, cc = np.nonzero(t == k)
            n = rng.integers(len(rr))
            r = int(np.clip(rr[n] - chip_size // 2, 0, b.height - chip_size)) + b.row_off
            c = int(np.clip(cc[n] - chip_size // 2, 0, b.width - chip_size)) + b.col_off
            items.append((i, r, c))
    num = max((int(t) for s in scenes for t in np.unique(s.target) if t != NODATA_CLASS), default=-1) + 1
    missing = [k for k in range(num) if k not in per_k]
    if missing:
        print(f"warning: class index(es) {missing} have no pixel in the {split} blocks; balanced sampling gives them no chip", file=sys.stderr)
    return items


class ChipDataset(Dataset):
    """Chips of one split: normalised image and target.

    Items are ``(x float32 (C, S, S), y int64 (S, S), soft float32 (K, S, S))`` with NaN (nodata)
    set to 0 after normalisation, y = 255 where unlabelled, and ``soft`` the scene's soft targets as
    probabilities (all 0 where a pixel or scene has none).
    """

    def __init__(self, scenes: list[SceneData], split: str, chip_size: int, stride: int, mean: np.ndarray, std: np.ndarray, max_nodata_fraction: float = 0.5,
                 num_classes: int = 0, per_class: int = 0, seed: int = 0) -> None:
        self.scenes = scenes
        self.num_classes = num_classes or max((s.soft.shape[0] for s in scenes if s.soft is not None), default=0)
        self.chip = chip_size
        self.mean = mean.astype(np.float32)[:, None, None]
        self.std = std.astype(np.float32)[:, None, None]
        self.items: list[tuple[int, int, int]] = []
        if per_class:
            self.items = balanced_chips(scenes, split, chip_size, per_class, seed)
            return
        for i, s in enumerate(scenes):
            for b in s.blocks:
                if b.split != split:
                    continue
                for r, c in chip_windows(b, chip_size, stride):
                    t = s.target[r : r + chip_size, c : c + chip_size]
                    if (t == NODATA_CLASS).mean() <= max_nodata_fraction:
                        self.items.append((i, r, c))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i, r, c = self.items[idx]
        s = self.scenes[i]
        x = (s.image[:, r : r + self.chip, c : c + self.chip] - self.mean) / self.std
        y = s.target[r : r + self.chip, c : c + self.chip].astype(np.int64)
        if s.soft is not None:
            soft = s.soft[:, r : r + self.chip, c : c + self.chip].astype(np.float32) / np.float32(255.0)
        else:
            soft = np.zeros((self.num_classes,) + y.shape, dtype=np.float32)
        return torch.from_numpy(np.nan_to_num(x, nan=0.0)), torch.from_numpy(y), torch.from_numpy(soft)


class LulcDataModule(L.LightningDataModule):
    """Train/val/test chip loaders for a :class:`trainer.config.FitConfig`.

    After :meth:`setup`, ``mean``, ``std`` (raw units, per band), ``scheme`` and ``weights`` (class
    weights) describe the data, and ``blocks`` lists every scene's split blocks.
    """

    def __init__(self, cfg: FitConfig, *, offset: int | str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.offset = offset
        self.scenes: list[SceneData] = []

    def setup(self, stage: str | None = None) -> None:
        """Load scenes, compute statistics, build the three datasets (idempotent)."""
        if self.scenes:
            return
        d = self.cfg.data
        self.scenes, self.scheme = load_scenes(self.cfg, offset=self.offset)
        self.mean, self.std = band_statistics(self.scenes)
        self.weights = class_weights(self.scenes, self.scheme.num_classes, self.cfg.loss.class_weighting, self.cfg.loss.max_class_weight)
        absent = absent_classes(self.scenes, self.scheme)
        if absent:
            import sys

            print(f"warning: class(es) {', '.join(absent)} have no pixel in the training blocks; the model cannot learn them "
                  "(add data with them, or drop them from the class file)", file=sys.stderr)
        mk = lambda split, stride: ChipDataset(self.scenes, split, d.chip_size, stride, self.mean, self.std, d.max_nodata_fraction,  # noqa: E731
                                               self.scheme.num_classes)
        if d.sampling == "balanced":
            self.train_set = ChipDataset(self.scenes, "train", d.chip_size, d.train_stride, self.mean, self.std, d.max_nodata_fraction,
                                         self.scheme.num_classes, per_class=d.chips_per_class, seed=self.cfg.seed)
        else:
            self.train_set = mk("train", d.train_stride)
        self.val_set = mk("val", d.chip_size)
        self.test_set = mk("test", d.chip_size)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise ValueError(
                f"{len(self.train_set)} training and {len(self.val_set)} validation chips: "
                "use more scenes, smaller blocks or chips"
            )

    @property
    def levels(self) -> list[str]:
        """Sentinel-2 processing levels of the training images (sorted; ``"unknown"`` where not recorded)."""
        return sorted({s.level for s in self.scenes})

    @property
    def blocks(self) -> list[SplitBlock]:
        """All split blocks of all scenes."""
        return [b for s in self.scenes for b in s.blocks]

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds, batch_size=self.cfg.data.batch_size, shuffle=shuffle, num_workers=self.cfg.data.num_workers,
            drop_last=shuffle and len(ds) > self.cfg.data.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)
