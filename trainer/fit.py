"""``python -m trainer fit``'s work: train with Lightning, test on the held-out blocks, write a bundle.

:func:`fit` trains from a :class:`trainer.config.FitConfig`, keeps ``last.ckpt`` so a killed run
resumes with ``--resume``, and writes a model bundle whose card carries the band statistics, the
split blocks, the temperature fitted on the validation split and the held-out metrics
(:mod:`trainer.scene_scores`; ``python -m trainer evaluate`` reproduces them from the bundle alone).

While it runs it rewrites ``<output.dir>/progress.json`` after every training batch (:class:`trainer.progress.ProgressFile`),
and at the end writes ``<output.dir>/comparison.json``: the new bundle beside the bundle it started from
(``model.init_from``) and the Dynamic World model, on the same pixels of the held-out test blocks (:func:`compare_on_test_blocks`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from rasterio.windows import Window

from core.classes import NODATA_CLASS, common_scheme, harmonize
from core.config import DW_BUNDLE_DIR, REPO_ROOT
from core.errors import LulcError
from core.evaluation.comparison import Comparison
from core.inference.policy import DEFAULT_OVERLAP, DEFAULT_TILE, model_decision, plan_run
from core.inference.streaming import predict_raster
from core.inputs.bands import SENSORS, sensor_of
from core.io.outputs import atomic_write_text
from core.sources.samples import get_scene, load_labels, load_model_input, scene_decision
from models.bundle import Bundle, ModelCard, load_bundle, save_bundle, write_card
from models.card import atomic_folder
from trainer.config import FitConfig
from trainer.data import LulcDataModule, test_block_crops
from trainer.module import SegmentationTask
from trainer.progress import PROGRESS_FILE, ProgressFile
from trainer.scene_scores import evaluate_arrays, evaluate_scene, summarize

__all__ = ["fit", "run_lock", "RunLockError", "machine_description", "INDEPENDENT_LABELS", "BatchProgress", "compare_on_test_blocks",
           "COMPARISON_FILE", "DW_BUNDLE"]

INDEPENDENT_LABELS = ("osm", "water", "dfc", "lulc")
"""Label products not derived from Dynamic World, reported beside it in the card."""


def _best_state(ckpt: str) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def machine_description(device: str = "cpu") -> str:
    """Where a run happened, in words: CPU model and cores, or the GPU (for the card's training record)."""
    from models.runtimes import cpu_model

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), host {os.cpu_count()} cores"
    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads (CPU)"


def _lightning_trainer(cfg: FitConfig, ckpt_dir: Path, extra: list[Callback] | None = None) -> tuple[L.Trainer, ModelCheckpoint]:
    """The Lightning trainer of a config, and its best-checkpoint callback (best by ``val_miou``, plus ``last.ckpt``).

    ``extra`` callbacks (e.g. :class:`BatchProgress`) are added after the checkpoint and early-stopping ones.
    """
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch:03d}-{val_miou:.4f}", monitor="val_miou", mode="max", save_top_k=1, save_last=True)
    t = cfg.trainer
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        callbacks=[best, EarlyStopping(monitor="val_miou", mode="max", patience=t.patience), *(extra or [])],
        logger=CSVLogger(cfg.out_dir, name="logs"),
        log_every_n_steps=t.log_every_n_steps,
        limit_train_batches=t.limit_train_batches,
        enable_progress_bar=t.progress_bar,
        default_root_dir=cfg.out_dir,
    )
    return trainer, best


def _model_card(cfg: FitConfig, dm: LulcDataModule, trainer: L.Trainer, best: ModelCheckpoint, fit_seconds: float,
                resumed: bool) -> ModelCard:
    """The card of the trained model: bands, statistics, classes and the training record (metrics come later)."""
    pack = [s for s in dm.scenes if not s.id.startswith(("chip:", "file:"))]
    files = [s.id for s in dm.scenes if s.id.startswith("file:")]
    n_chips = sum(s.id.startswith("chip:") for s in dm.scenes)
    return ModelCard(
        name=cfg.name,
        arch=cfg.model.arch,
        encoder=cfg.model.encoder,
        bands=list(cfg.data.bands),
        mean=[round(float(v), 4) for v in dm.mean],
        std=[round(float(v), 4) for v in dm.std],
        classes=dm.scheme.to_dict(),
        tile=DEFAULT_TILE,
        sensor=sensor_of(cfg.data.bands),
        gsd_m=max(SENSORS[s].gsd_m for s in sensor_of(cfg.data.bands).split("+")),
        training={
            "data": [s.id for s in pack] + files + ([f"{n_chips} exported chips from {cfg.data.chips_dir}"] if cfg.data.chips_dir else []),
            "labels": cfg.data.labels,
            "chips": {"train": len(dm.train_set), "val": len(dm.val_set), "test": len(dm.test_set)},
            "chip_size": cfg.data.chip_size,
            "epochs_run": trainer.current_epoch,
            "run": {"fit_seconds": round(fit_seconds, 1), "machine": machine_description(str(trainer.strategy.root_device)),
                    "resumed": resumed},
            "best_checkpoint": Path(best.best_model_path).name if best.best_model_path else None,
            "best_val_miou": float(best.best_model_score) if best.best_model_score is not None else None,
            "config": cfg.to_dict(),
            "blocks": [b.to_dict() for b in dm.blocks if not b.scene.startswith(("chip:", "file:"))],
            **({"files": [f.model_dump() for f in cfg.data.files]} if cfg.data.files else {}),
            "levels": dm.levels,
            "inputs": {s.id: s.input for s in pack},
        },
        levels=[lv for lv in dm.levels if lv != "unknown"],
        optional_bands=list(cfg.data.optional_bands),
        notes=(f"Trained on {len(pack)} sample-pack scene(s)" + (f" and {len(files)} image/label file pair(s)" if files else "") + "; "
               + ("Dynamic World targets are model output, not ground truth." if dm.scheme.name == "dynamic_world" else
                  f"targets in the class scheme {dm.scheme.name!r}.")),
    )


def _held_out_results(bundle: Bundle, cfg: FitConfig, dm: LulcDataModule) -> list[dict]:
    """Scores on the test split: exported test chips, then each pack scene's test blocks vs its labels and the independent ones."""
    results = []
    chips = [s for s in dm.scenes if s.id.startswith("chip:") and s.blocks[0].split == "test"]
    if chips:
        results.append(evaluate_arrays(bundle, chips, cfg.data.labels, dm.scheme.name))
    files = [s for s in dm.scenes if s.id.startswith("file:")]
    crops = test_block_crops(files)
    if crops:
        results.append({**evaluate_arrays(bundle, crops, "file labels", dm.scheme.name), "scene": "file pairs", "windows": f"{len(crops)} test block(s)"})
    for s in dm.scenes:
        if s.id.startswith(("chip:", "file:")) or not any(b.split == "test" for b in s.blocks):
            continue
        results.append(evaluate_scene(bundle, s.id, cfg.data.labels, split="test"))
        for other in INDEPENDENT_LABELS:
            if other in get_scene(s.id, cfg.data.data_dir).labels and other != cfg.data.labels:
                results.append(evaluate_scene(bundle, s.id, other, split="test", baseline=cfg.data.labels))
    return results


class BatchProgress(Callback):
    """Rewrites the run's progress file after every training batch and at each validation (:class:`ProgressFile`).

    Args:
        progress: The run's progress file.
    """

    def __init__(self, progress: ProgressFile) -> None:
        self.progress = progress

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Epoch ``trainer.current_epoch`` starts: 0 batches done."""
        if trainer.is_global_zero:
            self.progress.update(stage="training", epoch=trainer.current_epoch, batch=0, batches=_batches(trainer))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        """One batch done: its loss (the step's returned loss) and the position inside the epoch."""
        if not trainer.is_global_zero:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else None
        self.progress.batch(trainer.current_epoch, batch_idx + 1, _batches(trainer), value)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Validation of the epoch (not the sanity check) starts."""
        if trainer.is_global_zero and not trainer.sanity_checking:
            self.progress.update(stage="validating")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Validation done: its mIoU (``val_miou``) is recorded."""
        if trainer.is_global_zero and not trainer.sanity_checking and "val_miou" in trainer.callback_metrics:
            self.progress.update(val_miou=round(float(trainer.callback_metrics["val_miou"]), 5))


def _batches(trainer: L.Trainer) -> int | None:
    n = trainer.num_training_batches
    return int(n) if isinstance(n, int | float) and n == n and n != float("inf") else None


COMPARISON_FILE = "comparison.json"
"""Name of the end-of-run comparison inside a run folder."""
DW_BUNDLE = DW_BUNDLE_DIR
"""The ported Dynamic World model compared with every new bundle where a crosswalk to the reference exists."""


def _candidates(new: Bundle, cfg: FitConfig) -> tuple[list[tuple[str, str, str, Bundle]], list[dict]]:
    """(role, name, path, bundle) of the models to compare, and the ones that cannot be loaded (with the reason)."""
    models = [("new", new.card.name, str(cfg.bundle_dir), new)]
    skipped = []
    others = []
    if cfg.model.init_from:
        p = Path(cfg.model.init_from)
        p = p if p.is_absolute() else REPO_ROOT / p
        others.append(("init_from", p))
    if DW_BUNDLE.exists() and not (cfg.model.init_from and Path(others[0][1]).resolve() == DW_BUNDLE.resolve()):
        others.append(("dynamic_world", DW_BUNDLE))
    for role, p in others:
        if not (p / "card.json").exists():
            skipped.append({"role": role, "model": str(p), "reason": f"{p} is a weights file, not a bundle folder with a card"})
            continue
        try:
            b = load_bundle(p)
        except (LulcError, OSError, ValueError) as exc:
            skipped.append({"role": role, "model": str(p), "reason": str(exc)})
            continue
        models.append((role, b.card.name, str(p), b))
    return models, skipped


def _same_pixels(preds: dict[str, np.ndarray], schemes: dict[str, str], ref: np.ndarray, ref_scheme: str) -> np.ndarray:
    """Bool (H, W): pixels where every model has a class with a counterpart in the reference's common scheme and the reference a label."""
    common = np.ones(ref.shape, dtype=bool)
    for key, p in preds.items():
        hp, hr, scheme, _ = harmonize(p, schemes[key], ref, ref_scheme)
        common &= (scheme.to_index(hp) != NODATA_CLASS) & (scheme.to_index(hr) != NODATA_CLASS)
    return common


def compare_on_test_blocks(new: Bundle, cfg: FitConfig, dm: LulcDataModule,
                           progress: Callable[[int, int], None] | None = None) -> dict:
    """The new bundle beside the bundle it started from and the Dynamic World model, on the same held-out pixels.

    For each group of test data (the sample-pack scenes' test blocks against ``data.labels``; the file pairs' test
    blocks against their class file) every model that can read the data and whose classes have a crosswalk to the
    reference (:func:`core.classes.common_scheme`) predicts every test window; only pixels where all of them have a
    comparable class and the reference a label are scored (one confusion matrix per model,
    :class:`core.evaluation.comparison.Comparison`), so the mIoU and OA (overall accuracy) of the rows are on identical
    pixels. Exported chips are not compared (their bands are the new model's only).

    Args:
        new: The new bundle as saved.
        cfg: Its configuration (``model.init_from``: the bundle it started from).
        dm: The set-up data module (its scenes and split blocks).
        progress: Called with (windows done, windows total).

    Returns:
        ``{"groups": [{"reference", "windows", "pixels", "rows": [{"role", "model", "path", "miou",
        "overall_accuracy", "crosswalk"}], "skipped": [{"role", "model", "reason"}]}], "seconds"}``; ``role`` is
        ``new``, ``init_from`` or ``dynamic_world``; ``pixels`` is the number of scored pixels shared by all rows.
    """
    from affine import Affine

    from core.io.raster import GeoRaster

    t0 = time.perf_counter()
    models, load_skipped = _candidates(new, cfg)
    pack = [s for s in dm.scenes if not s.id.startswith(("chip:", "file:")) and any(b.split == "test" for b in s.blocks)]
    crops = test_block_crops([s for s in dm.scenes if s.id.startswith("file:")])
    n_windows = sum(sum(b.split == "test" for b in s.blocks) for s in pack) + len(crops)
    done = 0
    groups = []

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, n_windows)

    def group(reference: str, ref_scheme: str, usable: dict, skipped: list[dict], windows) -> dict:
        cmps = {k: Comparison(usable[k][3].card.scheme_name, ref_scheme) for k in usable}
        pixels, n = 0, 0
        for preds, ref in windows:
            common = _same_pixels(preds, {k: usable[k][3].card.scheme_name for k in usable}, ref, ref_scheme)
            for k, p in preds.items():
                cmps[k].add(np.where(common, p, NODATA_CLASS).astype(np.uint8), ref)
            pixels += int(common.sum())
            n += 1
        rows = []
        for k, (role, name, path, _b) in usable.items():
            m = cmps[k].metrics().to_dict() if pixels else None
            cw = cmps[k].crosswalk
            rows.append({"role": role, "model": name, "path": path, "miou": m["miou"] if m else None,
                         "overall_accuracy": m["overall_accuracy"] if m else None,
                         "crosswalk": f"{cw.source} -> {cw.target}" if cw else None})
        return {"reference": reference, "windows": f"{n} test block(s)", "pixels": pixels, "rows": rows,
                "skipped": load_skipped + skipped}

    if pack:
        usable, skipped = {}, []
        ref_scheme = get_scene(pack[0].id, cfg.data.data_dir).label_scheme(cfg.data.labels).name
        for i, (role, name, path, b) in enumerate(models):
            try:
                common_scheme(b.card.scheme_name, ref_scheme)
                usable[i] = (role, name, path, b)
            except LulcError as exc:
                skipped.append({"role": role, "model": name, "reason": str(exc)})

        def pack_windows():
            for s in pack:
                sc = get_scene(s.id, cfg.data.data_dir)
                decisions = {}
                for k, (role, name, _p, b) in list(usable.items()):
                    try:
                        decisions[k] = model_decision(b.card, scene_decision(sc, b.card))
                    except LulcError as exc:
                        if k == 0:
                            raise
                        skipped.append({"role": role, "model": name, "reason": f"{sc.id}: {exc}"})
                        usable.pop(k)
                for b in s.blocks:
                    if b.split != "test":
                        continue
                    win = Window(b.col_off, b.row_off, b.width, b.height)
                    preds = {}
                    for k, dec in decisions.items():
                        if k not in usable:
                            continue
                        bundle = usable[k][3]
                        img = load_model_input(sc, dec, win)
                        policy = plan_run(bundle.card, img.height, img.width, decision=dec, precision=bundle.precision)
                        preds[k] = predict_raster(img, bundle, policy, bands=bundle.bands, num_classes=bundle.num_classes,
                                                  class_ids=bundle.class_ids).classes.data[0]
                    ref, _ = load_labels(sc, cfg.data.labels, win)
                    tick()
                    yield preds, ref.data[0]

        windows = list(pack_windows())  # models refused on a scene are dropped before scoring
        windows = [({k: p for k, p in preds.items() if k in usable}, ref) for preds, ref in windows]
        groups.append(group(f"{cfg.data.labels} labels of the sample-pack scenes", ref_scheme, usable, skipped, windows))
    if crops:
        usable, skipped = {}, []
        for i, (role, name, path, b) in enumerate(models):
            missing = [x for x in b.bands if x not in cfg.data.bands]
            try:
                common_scheme(b.card.scheme_name, dm.scheme.name)
            except LulcError as exc:
                skipped.append({"role": role, "model": name, "reason": str(exc)})
                continue
            if missing:
                skipped.append({"role": role, "model": name, "reason": f"the file pairs carry only the training bands; it needs {', '.join(missing)}"})
                continue
            usable[i] = (role, name, path, b)
        windows = []
        for s in crops:
            raster = GeoRaster(s.image, None, Affine.identity(), float("nan"), tuple(cfg.data.bands))
            preds = {}
            for k, (_r, _n, _p, b) in usable.items():
                policy = plan_run(b.card, raster.height, raster.width, precision=b.precision)
                preds[k] = predict_raster(raster, b, policy, bands=b.bands, num_classes=b.num_classes, class_ids=b.class_ids).classes.data[0]
            windows.append((preds, dm.scheme.from_index(s.target)))
            tick()
        groups.append(group(f"file labels ({dm.scheme.name})", dm.scheme.name, usable, skipped, windows))
    return {"groups": groups, "seconds": round(time.perf_counter() - t0, 1)}


class RunLockError(LulcError):
    """A training run already writes to this output folder."""


@contextmanager
def run_lock(out_dir: Path):
    """Hold ``<out_dir>/.fit.lock`` (this process's pid) for the duration of a run; refuse a second live run.

    A lock left by a process that no longer exists is taken over. DDP worker processes (``LOCAL_RANK``/``NODE_RANK``
    other than 0) run under their launcher's lock.

    Raises:
        RunLockError: Another live process holds the lock.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / ".fit.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            alive = False
            if pid > 0:
                try:
                    os.kill(pid, 0)
                    alive = True
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    alive = True
            if alive:
                raise RunLockError(f"a training run (process {pid}) is already writing to {out_dir}; wait for it to finish or stop it, "
                                   "or set output.dir to another folder") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise RunLockError(f"could not take the run lock {lock}; remove it if no training is running")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def fit(cfg: FitConfig, *, resume: bool = False, offset: str | int | None = "auto") -> Path | None:
    """Train (refused while another run writes to the same ``output.dir``), test on the held-out blocks, write the bundle.

    See :func:`_fit` for the arguments.

    Raises:
        RunLockError: Training started twice on one output folder.
    """
    with run_lock(cfg.out_dir):
        return _fit(cfg, resume=resume, offset=offset)


def _fit(cfg: FitConfig, *, resume: bool = False, offset: str | int | None = "auto") -> Path | None:
    """Train, test on the held-out blocks, and write the bundle.

    Args:
        cfg: The configuration.
        resume: Continue from ``<output.dir>/checkpoints/last.ckpt`` if it exists (after a kill or
            a stop), otherwise start afresh.
        offset: Radiometric offset of the training images: ``"auto"`` (per image, see
            :mod:`core.inputs.decision`), 0 or 1000.

    Returns:
        The bundle folder (on the global-zero process; ``None`` on other DDP ranks).
    """
    L.seed_everything(cfg.seed, workers=True)
    rank_zero = os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
    progress = ProgressFile(cfg.out_dir / PROGRESS_FILE, cfg.trainer.max_epochs) if rank_zero else None
    dm = LulcDataModule(cfg, offset=offset)
    dm.setup()
    task = SegmentationTask.from_config(cfg, len(cfg.data.bands), dm.scheme.names, dm.weights)
    ckpt_dir = cfg.out_dir / "checkpoints"
    trainer, best = _lightning_trainer(cfg, ckpt_dir, [BatchProgress(progress)] if progress is not None else None)
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.exists() else None
    if resume and ckpt_path is None:
        print(f"no checkpoint at {last}; starting afresh", file=sys.stderr)
    t_fit = time.perf_counter()
    trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - t_fit
    if not trainer.is_global_zero:
        return None
    if progress is not None:
        progress.update(stage="testing", epochs_run=trainer.current_epoch)
    model = task.model
    if best.best_model_path:
        model.load_state_dict(_best_state(best.best_model_path))
    card = _model_card(cfg, dm, trainer, best, fit_seconds, resumed=ckpt_path is not None)
    # the bundle is made whole (weights, calibration, held-out metrics) in a private folder outside the runs folder
    # and published at the end (publish_bundle): no page lists a bundle that is half-written or still being scored
    staging = Path(tempfile.mkdtemp(prefix="lulc-bundle-"))
    try:
        bundle = _finish_bundle(model, card, cfg, dm, staging)
        bundle_dir = publish_bundle(staging, cfg.bundle_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    bundle.path = bundle_dir
    print(f"bundle written to {bundle_dir}")
    _write_comparison(bundle, cfg, dm, progress)
    if progress is not None:
        progress.update(stage="done", bundle=str(bundle_dir))
    return bundle_dir


def _finish_bundle(model: torch.nn.Module, card: ModelCard, cfg: FitConfig, dm: LulcDataModule, folder: Path) -> Bundle:
    """Save the trained network into ``folder``, calibrate it and score it on the held-out blocks.

    Returns:
        The bundle as saved (float16 weights); its card in ``folder`` has the temperature and the metrics.
    """
    bundle_dir = save_bundle(model, card, folder)
    bundle = load_bundle(bundle_dir)  # evaluate exactly what was saved (float16 weights)
    from trainer.calibration import validation_calibration  # temperature scaling on the validation split

    calibration = validation_calibration(bundle.model, dm.val_dataloader())
    card.temperature = bundle.card.temperature = calibration.temperature
    results = _held_out_results(bundle, cfg, dm)
    card.metrics = {"held_out": results, "precision": "fp32", "tile": card.tile, "overlap": DEFAULT_OVERLAP,
                    "calibration": {**calibration.to_dict(), "split": "val"}}
    write_card(card, bundle_dir)  # the weights on disk are the ones just evaluated
    print(summarize(results))
    return bundle


def publish_bundle(staging: str | Path, bundle_dir: str | Path) -> Path:
    """Move a finished bundle folder into place so that it appears whole or not at all.

    The files are copied into a hidden folder beside ``bundle_dir`` (``.<name>.<random>.partial``), the weights and
    everything else first and ``card.json`` last (a folder without a card is no bundle, see
    :func:`models.card.find_bundles`), each through a temporary file made durable before its rename; the folder is
    then renamed to ``bundle_dir`` (:func:`models.card.atomic_folder`, with the mode of a new folder). A previous bundle
    there is renamed aside first and removed after, so a kill or a full disk leaves the previous bundle or none, never a
    half-written one. A ``bundle_dir`` that holds files other
    than a bundle's is updated file by file instead (card last), keeping those files.

    Args:
        staging: A complete bundle folder (``card.json``, ``model.safetensors``, ...); left as it is.
        bundle_dir: Where the bundle goes.

    Returns:
        ``bundle_dir``.

    Raises:
        OutputError: The folder cannot be written (the message names it and the cause, e.g. no space left).
    """
    from core.io.outputs import OutputError, atomic_path

    staging, bundle_dir = Path(staging), Path(bundle_dir)
    names = sorted((p.name for p in staging.iterdir() if p.is_file()), key=lambda n: (n == "card.json", n))
    foreign = bundle_dir.is_dir() and any(not p.name.startswith(".") and p.name not in names for p in bundle_dir.iterdir())
    try:
        bundle_dir.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.nullcontext(bundle_dir) if foreign else atomic_folder(bundle_dir) as target:
            for name in names:
                with atomic_path(target / name) as tmp:
                    shutil.copyfile(staging / name, tmp)
    except OSError as exc:
        raise OutputError(f"cannot write the bundle {bundle_dir}: {exc.strerror or exc}; free some space or choose another "
                          "output.bundle_dir (the previous bundle, if any, is unchanged)") from None
    return bundle_dir


def _write_comparison(bundle: Bundle, cfg: FitConfig, dm: LulcDataModule, progress: ProgressFile | None) -> None:
    """``<output.dir>/comparison.json`` (:func:`compare_on_test_blocks`); a comparison that cannot be made is written as its reason.

    The bundle is already complete: a failure here never fails the run.
    """
    def step(done: int, total: int) -> None:
        if progress is not None:
            progress.update(stage="comparing", compare_done=done, compare_total=total)

    if progress is not None:
        progress.update(stage="comparing", compare_done=0, compare_total=None)
    try:
        result = compare_on_test_blocks(bundle, cfg, dm, step)
    except (LulcError, ValueError, OSError) as exc:
        result = {"groups": [], "error": str(exc)}
        print(f"warning: no comparison on the test blocks: {exc}", file=sys.stderr)
    else:
        for g in result["groups"]:
            line = "; ".join(f"{r['model']} ({r['role']}) mIoU {r['miou']:.4f}" for r in g["rows"] if r["miou"] is not None)
            print(f"comparison vs {g['reference']} on {g['pixels']} shared pixels of {g['windows']}: {line or 'no shared pixels'}")
    atomic_write_text(cfg.out_dir / COMPARISON_FILE, json.dumps(result, indent=1))
